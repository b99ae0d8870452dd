"""Maximum-likelihood fits of the gradient-coordinate models of :mod:`ratedist.sources`.

Each family in :data:`FAMILIES` is fitted to a 1-D sample and returned as a :class:`Fit`
that carries the fitted :class:`~ratedist.sources.AbstractSource` (so that every quantizer
design in :mod:`ratedist.quantizers` consumes it directly), the estimates with standard
errors, the log-likelihood, AIC, the Kolmogorov–Smirnov statistic and QQ data.
:func:`best_fit` fits several families, ranks them by AIC, says by how much the best one
wins (ΔAIC to the runner-up) and adds a Hill estimate of the tail index of ``|g|``.

The families and their estimators are listed in :mod:`ratedist.gradients.families`.

**Location is fixed at 0.** Every source of :mod:`ratedist.sources` is a zero-mean law
symmetric about 0, and so are the quantizer designs built on them (levels ``±l_j``, the
truncation ``[-alpha, alpha]``); a free location would give a law no designer can use. The
price is measured, not hidden: :class:`SampleSummary` reports ``mean / sd`` of the sample
(0 to 0.05 for most layers of the registered models, but up to 0.3 in absolute value for
some, e.g. the first-layer bias of ``mlp-digits`` after 100 Adam steps), and the KS
statistic is taken on the signed samples, so an offset or an asymmetry shows up there.

**Exact zeros are dropped** (and counted, :attr:`SampleSummary.n_zeros`): a weight whose
input is 0 in every example of the batch (a blank pixel: 30 % of the first-layer weight
gradient of ``mlp-digits`` with batches of 32), or behind a dead ReLU, has a gradient of
exactly 0, a point mass that no continuous family describes (and that a sparse code sends
for almost nothing).

**Shape parameters are bounded** by the source's supported range
(:attr:`~ratedist.sources.AbstractSource.PARAM_RANGES`: ``df`` in ``[0.3, 1e6]``, ``shape``
in ``[0.2, 50]``, ``tail_index`` in ``[0.3, 40]``). An estimate on a bound is reported in
:attr:`Fit.at_bound` (a Gaussian sample drives a Student-t ``df`` or a power-law tail index
there), and its standard error is ``None``.

**Standard errors** come from the observed Fisher information: the Hessian of the total
log-likelihood at the estimate, by central differences (step 1e-4) in the log-parameters,
inverted, and mapped back by the delta method (``SE(theta) = theta SE(log theta)``). For
the Gaussian and the Laplace laws this equals the expected information
(``sigma / sqrt(2n)``, ``scale / sqrt(n)``; tests/gradients/test_gradients_fit.py checks it).

**AIC** is ``2k - 2 log L`` with ``k`` the number of fitted parameters (1 or 2). The
empirical source is no maximum-likelihood fit (its in-sample likelihood grows without bound
as the bandwidth shrinks): it is a KDE on at most :data:`EMPIRICAL_MAX_CENTRES` of the
samples, and its ``log L`` scores every sample out of sample (the held-out ones against the
KDE, the centres leaving their own kernel out), with ``k = 0``. Like AIC this estimates the
expected log-likelihood of new data (M. Stone, J. R. Stat. Soc. B 39 (1977) 44-47, shows that
leave-one-out and AIC agree asymptotically), on the same points as the parametric fits, so
the numbers compare; its KS statistic is in-sample, on the centres. :func:`best_fit` ranks
the parametric families unless asked otherwise.

**KS** is ``sup |F_n - F|`` on the signed samples against the fitted cdf. No p-value is
given: with estimated parameters the classical one is wrong (too large; Lilliefors 1967),
and with 10^4-10^5 gradient coordinates any model is rejected anyway; the statistic is for
comparison.

**Tail index** (:func:`hill_estimator`): Hill's estimator on ``|x|`` from the ``k`` largest
values, ``1/alpha = (1/k) sum_{i<=k} log(X_(i) / X_(k+1))``, standard error
``alpha / sqrt(k)``; default ``k = floor(sqrt(n))`` (at least 10), the usual compromise
between the bias of a large ``k`` and the variance of a small one. It estimates ``a`` of
``P(|X| > x) ~ x^(-a)``: ``df`` for a Student-t, the tail index of a power law. For laws
with lighter-than-power tails (Gaussian, Laplace, generalized Gaussian) it has no finite
limit and grows with ``n``; on such data the power-law fit runs to the exponential limit of
its family, the tail index on its bound 40.

References:
    H. Akaike, IEEE Trans. Autom. Control 19 (1974) 716-723 (AIC); B. M. Hill, Ann. Statist.
    3 (1975) 1163-1174 (tail index); K. Lange, R. Little, J. Taylor, JASA 84 (1989) 881-896
    (Student-t likelihood and information).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
from scipy import special, stats

from ratedist._validation import check_int
from ratedist.gradients.capture import SAMPLE_KINDS, Capture
from ratedist.gradients.families import FAMILIES, Family, param_bounds, parametric_families
from ratedist.sources import (
    AbstractSource,
    Empirical,
)

#: Fewest (nonzero) samples a fit accepts.
MIN_SAMPLES = 50
#: Largest number of kernel centres of the empirical fit (its cost is O(centres x points)).
EMPIRICAL_MAX_CENTRES = 2000
#: Central-difference step of the observed-information Hessian, in log-parameters.
HESSIAN_STEP = 1e-4
#: Points of the QQ data (logit-spaced probabilities reaching 0.5/n and 1 - 0.5/n).
QQ_POINTS = 99


# ----------------------------------------------------------------------------- results
class SampleSummary(NamedTuple):
    """What was fitted: sizes, and the statistics that bear on the modelling choices."""

    n_total: int  # samples given
    n_used: int  # nonzero samples fitted (after subsampling, if any)
    n_zeros: int  # exact zeros dropped
    mean: float  # of the nonzero samples
    std: float
    mean_over_sd: float  # how far off a zero location is
    median_abs: float  # the unit of the internal standardization


class QQData(NamedTuple):
    """Quantiles for a QQ plot: ``theoretical[i] = F^{-1}(p[i])``, ``empirical[i]`` the sample's."""

    probabilities: np.ndarray
    theoretical: np.ndarray
    empirical: np.ndarray


class HillEstimate(NamedTuple):
    """Hill's tail-index estimate from the ``k`` largest of ``n`` values of ``|x|``."""

    tail_index: float
    stderr: float  # tail_index / sqrt(k)
    k: int
    threshold: float  # X_(k+1), the (k+1)-th largest |x|
    n: int


@dataclasses.dataclass(frozen=True)
class Fit:
    """One family fitted to one sample.

    Attributes:
        family: the name in :data:`FAMILIES`.
        source: the fitted source (a quantizer design consumes it as it is).
        params: the source's constructor parameters (original units).
        stderr: standard error of each parameter (observed information), ``None`` for a
            parameter on a bound of its range (the others' are then conditional on it) or
            where the information is not positive definite; empty for the empirical source.
        n_params: parameters counted by AIC (all of the family's, on a bound or not).
        n: samples fitted.
        loglik: maximized log-likelihood (leave-one-out, scaled to ``n``, for ``empirical``).
        aic: ``2 n_params - 2 loglik``.
        ks: Kolmogorov–Smirnov statistic ``sup |F_n - F|`` (in-sample).
        at_bound: parameters whose estimate lies on a bound of the supported range.
        qq: QQ data.
        note: what is special about this fit ("" if nothing).
    """

    family: str
    source: AbstractSource
    params: Mapping[str, Any]
    stderr: Mapping[str, float | None]
    n_params: int
    n: int
    loglik: float
    aic: float
    ks: float
    at_bound: tuple[str, ...]
    qq: QQData
    note: str = ""

    def to_dict(self, *, qq: bool = False) -> dict[str, Any]:
        """JSON-ready (no NaN/inf: a missing standard error is ``None``)."""
        out = {
            "family": self.family,
            "params": dict(self.params),
            "stderr": dict(self.stderr),
            "n_params": self.n_params,
            "n": self.n,
            "loglik": self.loglik,
            "aic": self.aic,
            "ks": self.ks,
            "at_bound": list(self.at_bound),
            "note": self.note,
        }
        if qq:
            out["qq"] = {k: [float(v) for v in arr] for k, arr in self.qq._asdict().items()}
        return out


@dataclasses.dataclass(frozen=True)
class BestFit:
    """Several families fitted to one sample, ranked by AIC.

    Attributes:
        name: what was fitted (``"layer 'dense1/w' at step 100"``), for messages.
        fits: family -> :class:`Fit`, in increasing AIC (the best first).
        best: the fit of least AIC.
        runner_up: the second (``None`` when one family was fitted).
        delta_aic: ``AIC(runner_up) - AIC(best) >= 0`` (``None`` without a runner-up);
            above 10 the runner-up has essentially no support (Burnham & Anderson 2002).
        tail: Hill's tail index of ``|x|``.
        summary: the sample's :class:`SampleSummary`.
    """

    name: str
    fits: Mapping[str, Fit]
    best: Fit
    runner_up: Fit | None
    delta_aic: float | None
    tail: HillEstimate
    summary: SampleSummary

    def to_dict(self, *, qq: bool = False) -> dict[str, Any]:
        """JSON-ready summary: best family, ΔAIC, tail index and every fit."""
        return {
            "best": self.best.family,
            "runner_up": None if self.runner_up is None else self.runner_up.family,
            "delta_aic": self.delta_aic,
            "tail": self.tail._asdict(),
            "summary": self.summary._asdict(),
            "fits": {name: f.to_dict(qq=qq) for name, f in self.fits.items()},
        }


# ----------------------------------------------------------------------------- samples
def prepare_samples(
    samples: Any,
    *,
    name: str = "samples",
    min_samples: int = MIN_SAMPLES,
    max_samples: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, SampleSummary]:
    """Flatten, check and clean a sample for fitting: ``(nonzero float64 values, summary)``.

    Args:
        samples: array-like of any shape.
        name: what the samples are, named in every error (``"layer 'dense1/w' at step 0"``).
        min_samples: fewest nonzero samples accepted (>= 3).
        max_samples: keep at most this many (a uniform random subset); default all.
        seed: of that subset.

    Raises:
        TypeError: non-numeric samples.
        ValueError: NaN/inf samples (counted), constant samples (zero variance), fewer than
            ``min_samples`` nonzero samples — each message starts with ``name``.
    """
    try:
        x = np.asarray(samples, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}: samples must be array-like of real numbers, got {type(samples).__name__}"
        ) from exc
    min_samples = check_int("min_samples", min_samples, min_value=3)
    bad = ~np.isfinite(x)
    if bad.any():
        n_nan = int(np.isnan(x).sum())
        raise ValueError(
            f"{name}: {int(bad.sum())} of {x.size} samples are not finite ({n_nan} NaN, "
            f"{int(bad.sum()) - n_nan} inf); nothing is fitted to a diverged gradient"
        )
    if x.size and np.all(x == x[0]):
        raise ValueError(
            f"{name}: all {x.size} samples equal {float(x[0])!r} (zero variance); "
            "no distribution can be fitted"
        )
    nonzero = x[x != 0]
    n_zeros = x.size - nonzero.size
    if nonzero.size < min_samples:
        raise ValueError(
            f"{name}: {nonzero.size} nonzero samples ({n_zeros} exact zeros dropped), "
            f"at least {min_samples} needed"
        )
    if max_samples is not None:
        max_samples = check_int("max_samples", max_samples, min_value=min_samples)
        if nonzero.size > max_samples:
            rng = np.random.default_rng(seed)
            nonzero = np.sort(rng.choice(nonzero, max_samples, replace=False))
    sd = float(np.std(nonzero))
    mean = float(np.mean(nonzero))
    summary = SampleSummary(
        n_total=int(x.size),
        n_used=int(nonzero.size),
        n_zeros=int(n_zeros),
        mean=mean,
        std=sd,
        mean_over_sd=mean / sd if sd > 0 else 0.0,
        median_abs=float(np.median(np.abs(nonzero))),
    )
    return nonzero, summary


def qq_data(source: AbstractSource, x: np.ndarray, n_points: int = QQ_POINTS) -> QQData:
    """Theoretical vs empirical quantiles at logit-spaced probabilities from ``0.5/n`` to
    ``1 - 0.5/n`` (``n = x.size``), which resolve both tails."""
    n_points = check_int("n_points", n_points, min_value=3)
    edge = math.log((x.size - 0.5) / 0.5)
    p = special.expit(np.linspace(-edge, edge, n_points))
    return QQData(p, np.asarray(source.ppf(p), np.float64), np.quantile(x, p))


def hill_estimator(samples: Any, k: int | None = None) -> HillEstimate:
    """Hill's estimate of the tail index ``a`` of ``P(|X| > x) ~ x^(-a)``.

    Args:
        samples: array-like; its nonzero finite magnitudes are used.
        k: number of upper order statistics, ``1 <= k < n``; default ``floor(sqrt(n))``,
            at least 10 (and at most ``n - 1``).

    Returns:
        A :class:`HillEstimate`, ``tail_index = k / sum_{i<=k} log(X_(i)/X_(k+1))`` with
        standard error ``tail_index / sqrt(k)`` (asymptotic, for a Pareto tail).

    Raises:
        ValueError: fewer than 3 nonzero magnitudes, a bad ``k``, or the ``k + 1`` largest
            magnitudes all equal.

    References:
        B. M. Hill, A simple general approach to inference about the tail of a distribution,
        Ann. Statist. 3 (1975) 1163-1174.
    """
    y = np.abs(np.asarray(samples, np.float64).ravel())
    y = np.sort(y[np.isfinite(y) & (y > 0)])[::-1]
    n = y.size
    if n < 3:
        raise ValueError(f"samples must have at least 3 nonzero finite values, got {n}")
    k = (
        min(n - 1, max(10, math.isqrt(n)))
        if k is None
        else check_int("k", k, min_value=1, max_value=n - 1)
    )
    logs = np.log(y[:k]) - math.log(y[k])
    h = float(np.mean(logs))
    if h <= 0:
        raise ValueError(f"the {k + 1} largest magnitudes are all equal to {y[k]!r}: no tail")
    alpha = 1.0 / h
    return HillEstimate(alpha, alpha / math.sqrt(k), k, float(y[k]), n)


# ----------------------------------------------------------------------------- fitting
def _observed_se(
    family: Family, y: np.ndarray, params: Mapping[str, float], free: Sequence[str]
) -> dict[str, float | None]:
    """Standard errors from the observed information in log-parameters (delta method back)."""
    out: dict[str, float | None] = dict.fromkeys(family.params)
    if not free:
        return out
    phi0 = np.array([math.log(params[p]) for p in free])

    def ll(phi: np.ndarray) -> float:
        kw = dict(params)
        kw.update({p: math.exp(v) for p, v in zip(free, phi, strict=True)})
        return float(np.sum(family.logpdf(y, **kw)))

    h, m = HESSIAN_STEP, len(free)
    hess = np.empty((m, m))
    f0 = ll(phi0)
    eye = np.eye(m) * h
    for i in range(m):
        hess[i, i] = (ll(phi0 + eye[i]) - 2 * f0 + ll(phi0 - eye[i])) / h**2
        for j in range(i):
            hess[i, j] = hess[j, i] = (
                ll(phi0 + eye[i] + eye[j])
                - ll(phi0 + eye[i] - eye[j])
                - ll(phi0 - eye[i] + eye[j])
                + ll(phi0 - eye[i] - eye[j])
            ) / (4 * h**2)
    info = -hess
    try:
        np.linalg.cholesky(info)  # positive definite, or no standard errors
    except np.linalg.LinAlgError:
        return out
    cov = np.linalg.inv(info)
    for i, p in enumerate(free):
        out[p] = float(params[p] * math.sqrt(cov[i, i]))
    return out


def _fit_parametric(family: Family, x: np.ndarray, unit: float) -> Fit:
    y = np.abs(x) / unit
    est = family.estimate(y)
    at_bound = tuple(
        p
        for p in family.params
        if p != family.scale_param
        and any(math.isclose(est[p], b, rel_tol=1e-6) for b in param_bounds(family.source_cls, p))
    )
    free = [p for p in family.params if p not in at_bound]
    se = _observed_se(family, y, est, free)
    n = x.size
    loglik = float(np.sum(family.logpdf(y, **est))) - n * math.log(unit)
    params = {p: est[p] * (unit if p == family.scale_param else 1.0) for p in family.params}
    stderr = {
        p: None if v is None else v * (unit if p == family.scale_param else 1.0)
        for p, v in se.items()
    }
    source = family.source_cls(**params)
    k = len(family.params)  # an estimate on a bound was still chosen by the data
    note = ""
    if at_bound:
        note = f"{', '.join(at_bound)} on the bound of its supported range"
    elif any(v is None for v in stderr.values()):
        note = "observed information not positive definite: no standard errors"
    return Fit(
        family=family.name,
        source=source,
        params=MappingProxyType(params),
        stderr=MappingProxyType(stderr),
        n_params=k,
        n=n,
        loglik=loglik,
        aic=2 * k - 2 * loglik,
        ks=float(stats.kstest(x, source.cdf).statistic),
        at_bound=at_bound,
        qq=qq_data(source, x),
        note=note,
    )


def _fit_empirical(x: np.ndarray, seed: int) -> Fit:
    rng = np.random.default_rng(seed)
    if x.size <= EMPIRICAL_MAX_CENTRES:
        is_centre = np.ones(x.size, bool)
    else:
        is_centre = np.zeros(x.size, bool)
        is_centre[rng.choice(x.size, EMPIRICAL_MAX_CENTRES, replace=False)] = True
    centres = x[is_centre]
    source = Empirical(centres, symmetrize=True)
    n_kernels = source.samples.size  # 2 x centres: symmetrized
    p = source.pdf(x)
    # Every point is scored out of sample, so that the sum compares with the parametric
    # log-likelihoods on the same points: held-out points against the whole KDE, centres
    # leaving their own kernel out (their mirror image stays: the law is the symmetrized
    # one). An isolated point gets density ~0: floored at the smallest normal float.
    self_kernel = 1.0 / (source.bandwidth * math.sqrt(2 * math.pi))
    p = np.where(is_centre, (n_kernels * p - self_kernel) / (n_kernels - 1), p)
    loglik = float(np.sum(np.log(np.maximum(p, np.finfo(np.float64).tiny))))
    return Fit(
        family="empirical",
        source=source,
        params=MappingProxyType(source.params()),
        stderr=MappingProxyType({}),
        n_params=0,
        n=int(x.size),
        loglik=loglik,
        aic=-2 * loglik,
        ks=float(stats.kstest(centres, source.cdf).statistic),
        at_bound=(),
        qq=qq_data(source, centres),
        note=(
            f"KDE on {centres.size} of {x.size} samples; log-likelihood out of sample "
            "(held out, or leave-one-out for the centres); KS in-sample on the centres"
        ),
    )


def _fit_clean(family: str, x: np.ndarray, unit: float, seed: int) -> Fit:
    spec = FAMILIES.get(family)
    return _fit_parametric(spec, x, unit) if spec.parametric else _fit_empirical(x, seed)


def fit_family(
    samples: Any,
    family: str,
    *,
    name: str = "samples",
    min_samples: int = MIN_SAMPLES,
    max_samples: int | None = None,
    seed: int = 0,
) -> Fit:
    """Fit one family of :data:`FAMILIES` to ``samples`` (location 0; see module docstring).

    Args:
        samples: array-like of any shape (flattened; exact zeros dropped).
        family: ``gaussian``, ``laplace``, ``student-t``, ``gen-gaussian``, ``power-law``
            or ``empirical``.
        name: what the samples are, named in errors.
        min_samples, max_samples, seed: see :func:`prepare_samples` (``seed`` also picks
            the centres of the empirical fit).

    Returns:
        A :class:`Fit`.

    Raises:
        ValueError: unknown family; bad samples (see :func:`prepare_samples`).
    """
    FAMILIES.entry(family)
    x, summary = prepare_samples(
        samples, name=name, min_samples=min_samples, max_samples=max_samples, seed=seed
    )
    return _fit_clean(family, x, summary.median_abs, seed)


def best_fit(
    samples: Any,
    *,
    families: Iterable[str] | None = None,
    name: str = "samples",
    hill_k: int | None = None,
    min_samples: int = MIN_SAMPLES,
    max_samples: int | None = None,
    seed: int = 0,
) -> BestFit:
    """Fit several families to ``samples`` and rank them by AIC.

    Args:
        samples: array-like of any shape (flattened; exact zeros dropped and counted).
        families: names in :data:`FAMILIES`; default every parametric one
            (:func:`parametric_families`). Add ``"empirical"`` to rank the KDE too.
        name: what the samples are (``"layer 'dense1/w' at step 100"``), named in errors.
        hill_k: ``k`` of :func:`hill_estimator` (default ``floor(sqrt(n))``, at least 10).
        min_samples, max_samples, seed: see :func:`prepare_samples`.

    Returns:
        A :class:`BestFit`: the fits by increasing AIC, the best, the runner-up and
        ``delta_aic = AIC(runner-up) - AIC(best)``.

    Raises:
        ValueError: an unknown or repeated family, no family; bad samples (NaN/inf,
            constant, too few — each message starts with ``name``).
    """
    names = parametric_families() if families is None else list(families)
    if not names:
        raise ValueError("families must name at least one family, got none")
    for fam in names:
        FAMILIES.entry(fam)
    if len(set(names)) != len(names):
        raise ValueError(f"families must not repeat a name, got {names}")
    x, summary = prepare_samples(
        samples, name=name, min_samples=min_samples, max_samples=max_samples, seed=seed
    )
    fits = sorted(
        (_fit_clean(fam, x, summary.median_abs, seed) for fam in names), key=lambda f: f.aic
    )
    runner_up = fits[1] if len(fits) > 1 else None
    return BestFit(
        name=name,
        fits=MappingProxyType({f.family: f for f in fits}),
        best=fits[0],
        runner_up=runner_up,
        delta_aic=None if runner_up is None else runner_up.aic - fits[0].aic,
        tail=hill_estimator(x, hill_k),
        summary=summary,
    )


class LayerFit(NamedTuple):
    """:func:`fit_capture`'s result for one layer at one step: a fit or why there is none."""

    step: int
    layer: str
    result: BestFit | None
    error: str | None


def fit_capture(
    capture: Capture,
    *,
    steps: Iterable[int] | None = None,
    kind: str = "minibatch",
    families: Iterable[str] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> list[LayerFit]:
    """:func:`best_fit` on every layer of every (or the given) step of a capture.

    A layer whose samples cannot be fitted (too few, constant, non-finite) is returned with
    the error's message instead of a fit, so that one degenerate layer does not hide the rest.

    Args:
        capture: from :func:`~ratedist.gradients.capture.load_capture`.
        steps: steps to fit (each loaded); default all loaded.
        kind: a name in :data:`~ratedist.gradients.capture.SAMPLE_KINDS`.
        families, max_samples, seed: as in :func:`best_fit`.

    Raises:
        ValueError: an unknown step or kind.
    """
    SAMPLE_KINDS.entry(kind)
    families = None if families is None else list(families)
    # The caller's errors are raised here, not reported as the layers' own.
    for fam in families or ():
        FAMILIES.entry(fam)
    if max_samples is not None:
        check_int("max_samples", max_samples, min_value=MIN_SAMPLES)
    chosen = list(capture.steps) if steps is None else list(steps)
    out = []
    for step in chosen:
        for layer in capture.layers:
            x = capture.samples(step, layer, kind)
            try:
                res = best_fit(
                    x,
                    families=families,
                    name=f"layer {layer!r} at step {step}",
                    max_samples=max_samples,
                    seed=seed,
                )
            except ValueError as exc:
                out.append(LayerFit(step, layer, None, str(exc)))
            else:
                out.append(LayerFit(step, layer, res, None))
    return out
