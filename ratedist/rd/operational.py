"""Operational (rate, distortion) points of the run-time compressors on Gaussian gradients.

:func:`monte_carlo_point` runs the actual JAX compressor (``jax.vmap`` over trials) on
``g ~ N(0, sigma^2 I_d)`` and measures the normalized distortion with its standard error and
both bit layers; :func:`closed_form_point` evaluates the registered closed form
(:data:`ratedist.rd.closed_forms.CLOSED_FORMS`); :func:`rd_point` returns both together with
the gap to Shannon's ``D(R) = 2^(-2R)`` (normalized), in dB and in bits.

Rates are bits per coordinate including side information (container layer in ``rate_bits``,
entropy layer in ``entropy_rate_bits``), distortions are ``E||g - g_hat||^2 / (d sigma^2)``.

References:
    Gandikota et al., arXiv 2108.09899 (rate–distortion of gradient compressors).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_int, check_positive
from ratedist.compressors import COMPRESSORS, Compressor, make
from ratedist.infotheory.entropy_estimate import pooled_entropy_bits
from ratedist.infotheory.shannon import gap_to_shannon, gaussian_distortion
from ratedist.quantizers import DESIGNS, ScalarQuantizer
from ratedist.rd.closed_forms import CLOSED_FORMS, ClosedForm
from ratedist.rd.symbols import SYMBOL_SOURCES
from ratedist.sources.classic import Gaussian


class RDPoint(NamedTuple):
    """One operational point, closed form and Monte Carlo side by side.

    Attributes:
        compressor: registry name.
        params: the compressor's configuration (JSON-able).
        rate_bits: container rate per coordinate (closed form where available, else MC mean).
        entropy_rate_bits: entropy-layer rate per coordinate (closed form where available,
            else MC mean; None if neither).
        distortion: closed-form ``E||g - g_hat||^2/(d sigma^2)``, or None.
        distortion_mc: Monte Carlo mean of the per-trial normalized distortion, or None.
        distortion_mc_se: its standard error (sample std / sqrt(trials)), or None.
        shannon_distortion: ``2^(-2 rate_bits)``, the Gaussian D(R) at the container rate.
        gap_db: ``10 log10(D / D_shannon(rate_bits))`` with D the closed form if present,
            else the MC mean; None when D = 0.
        gap_bits: ``rate_bits - R_shannon(D)``; None when D = 0.
        rate_bits_mc: MC mean container rate, or None.
        entropy_rate_bits_mc: MC mean entropy-layer rate, or None.
        exact: whether the closed form is exact at this d (None without closed form).
        d: dimension.
        trials: Monte Carlo trials (0 when none were run).
        rate_bits_mc_se: standard error of ``rate_bits_mc`` (0 for fixed-length containers).
        entropy_rate_bits_mc_se: standard error of ``entropy_rate_bits_mc``.
        entropy_rate_bits_mc_bias: bound on the bias of ``entropy_rate_bits_mc`` as an
            estimate of the entropy of the symbol law (pooled Miller–Madow estimator), or None
            where the estimator states none (per-call plug-in mean).
        entropy_estimator: how ``entropy_rate_bits_mc`` was estimated: ``"pooled
            miller-madow"`` (symbols pooled over trials, :mod:`ratedist.rd.symbols`) or
            ``"per-call plug-in"`` (mean of ``CompressInfo.entropy_bits``); None without MC.
    """

    compressor: str
    params: dict[str, Any]
    rate_bits: float
    entropy_rate_bits: float | None
    distortion: float | None
    distortion_mc: float | None
    distortion_mc_se: float | None
    shannon_distortion: float
    gap_db: float | None
    gap_bits: float | None
    rate_bits_mc: float | None = None
    entropy_rate_bits_mc: float | None = None
    exact: bool | None = None
    d: int = 0
    trials: int = 0
    rate_bits_mc_se: float | None = None
    entropy_rate_bits_mc_se: float | None = None
    entropy_rate_bits_mc_bias: float | None = None
    entropy_estimator: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (NumPy scalars converted, non-finite values as None)."""
        return {k: _jsonable(v) for k, v in self._asdict().items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def as_compressor(compressor: Any) -> Compressor:
    """A :class:`Compressor` from itself or from a spec string such as ``"top-k:k=10"``."""
    if isinstance(compressor, Compressor):
        return compressor
    if isinstance(compressor, str):
        return make(compressor)
    raise TypeError(
        f"compressor must be a Compressor or a spec string like 'top-k:k=10', got "
        f"{type(compressor).__name__}"
    )


def _default_dtype() -> Any:
    return jnp.result_type(float)


def mc_sigma_range(dtype: Any = None) -> tuple[float, float]:
    """The coordinate standard deviations for which the Monte Carlo in ``dtype`` is meaningful.

    The simulation draws ``sigma * N(0, 1)`` in ``dtype`` (float32 unless x64 is enabled) and
    sums squared errors over ``d`` coordinates, so ``sigma^2`` has to sit well inside the
    normal range ``[tiny, max]`` of ``dtype``: the range is ``[tiny^0.4, max^0.4]``, which
    leaves a factor ``max^0.2`` (about 10^7.7 in float32) of headroom for tails and the sum
    over coordinates, and the same below for the error of a fine quantizer. Outside it the
    draws overflow to ``inf`` or underflow to zero and the distortion comes out NaN.

    The range is not removed by simulating at ``sigma = 1`` and rescaling: not every
    compressor is scale-equivariant (a fixed-level ``scalar`` quantizer without
    normalization is not), so the distortion at ``sigma`` is not that at 1. Closed forms
    (``trials = 0``) simulate nothing and take any ``sigma > 0``.

    Args:
        dtype: the simulation dtype; default the JAX default float.

    Returns:
        ``(lo, hi)``.
    """
    info = jnp.finfo(_default_dtype() if dtype is None else dtype)
    return float(info.tiny) ** 0.4, float(info.max) ** 0.4


def _check_mc_args(d: Any, trials: Any, sigma: Any) -> tuple[int, int, float]:
    d = check_int("d", d, min_value=1)
    trials = check_int("trials", trials, min_value=2)
    sigma = check_positive("sigma", sigma)
    lo, hi = mc_sigma_range()
    if not lo <= sigma <= hi:
        name = jnp.dtype(_default_dtype()).name
        raise ValueError(
            f"sigma must lie in [{lo:.3g}, {hi:.3g}] for the {name} Monte Carlo (sigma^2 and "
            f"sums of squared errors must stay in {name}'s normal range), got {sigma!r}; "
            "closed forms alone (trials = 0) take any sigma > 0"
        )
    return d, trials, sigma


def monte_carlo_stats(
    compressor: Any, d: int, *, trials: int, key: Any, sigma: float = 1.0
) -> dict[str, float]:
    """Per-trial normalized distortion and rates of the JAX compressor, summarized.

    Draws ``g`` of shape ``(trials, d)`` with i.i.d. ``N(0, sigma^2)`` entries and applies
    ``compressor.update`` under ``jax.vmap`` with one key per trial.

    The entropy layer: for a compressor enrolled in
    :data:`ratedist.rd.symbols.SYMBOL_SOURCES` (lattices) the symbols of all trials are pooled
    and their entropy estimated by Miller–Madow
    (:func:`ratedist.infotheory.entropy_estimate.pooled_entropy_bits`): bias at most
    ``rows * sum_j (K_j - 1) / (2 N ln 2) / d`` bits per coordinate (``N = trials * rows``
    samples per symbol column, ``K_j`` distinct symbols), SE by the delete-one-trial
    jackknife. Otherwise it is the mean of the per-call ``entropy_bits`` (plug-in entropy of
    ``d`` symbols of small alphabets; no bias bound stated).

    Returns:
        ``distortion_mc``, ``rate_bits_mc``, ``entropy_rate_bits_mc`` (means over trials; rates
        per coordinate) and their standard errors under the same names + ``_se``;
        ``entropy_rate_bits_mc_bias`` (None for the per-call estimator) and
        ``entropy_estimator`` (see :class:`RDPoint`).
    """
    comp = as_compressor(compressor)
    d, trials, sigma = _check_mc_args(d, trials, sigma)
    if key is None:
        raise ValueError("key must be a JAX PRNG key, got None")
    dtype = _default_dtype()
    k_data, k_comp = jax.random.split(key)
    g = jnp.asarray(sigma, dtype) * jax.random.normal(k_data, (trials, d), dtype)
    keys = jax.random.split(k_comp, trials)
    norm = float(d) * sigma * sigma
    name = comp.facts.name
    source = SYMBOL_SOURCES.get(name) if name in SYMBOL_SOURCES else None

    def one(x: jax.Array, k: Any) -> tuple[jax.Array, ...]:
        x_hat, _, info = comp.update(x, comp.init(x), key=k)
        err = x - x_hat
        out = (jnp.sum(err * err) / norm, info.container_bits / d, info.entropy_bits / d)
        if source is None:
            return out
        return (*out, source(x, key=k, **comp.facts.params))

    dist, rate, ent, *symbols = jax.jit(jax.vmap(one))(g, keys)
    out: dict[str, Any] = {}
    for key_name, v in (
        ("distortion_mc", dist),
        ("rate_bits_mc", rate),
        ("entropy_rate_bits_mc", ent),
    ):
        v = np.asarray(v, np.float64)
        if v.min() == v.max():
            # a constant sample (a fixed-length container): its value and SE 0, exactly
            # (np.mean of equal values can be an ulp off, and np.std a few 1e-17)
            out[key_name], out[key_name + "_se"] = float(v[0]), 0.0
        else:
            out[key_name] = float(v.mean())
            out[key_name + "_se"] = float(v.std(ddof=1) / math.sqrt(trials))
    out["entropy_rate_bits_mc_bias"] = None
    out["entropy_estimator"] = "per-call plug-in"
    if symbols:
        sym = np.asarray(symbols[0])
        est = pooled_entropy_bits(sym)
        rows = sym.shape[1]
        side = float(SYMBOL_SOURCES.facts(name)["side_bits"](comp.facts.params))
        out["entropy_rate_bits_mc"] = (rows * est.bits + side) / d
        out["entropy_rate_bits_mc_se"] = rows * est.se / d
        out["entropy_rate_bits_mc_bias"] = rows * est.bias_bound / d
        out["entropy_estimator"] = "pooled miller-madow"
    return out


def closed_form(compressor: Any, d: int, *, sigma: float = 1.0) -> ClosedForm | None:
    """The registered closed form of a configured compressor at dimension d, or None.

    Args:
        compressor: a :class:`Compressor` or a spec string.
        d: dimension.
        sigma: standard deviation of the Gaussian coordinates.

    Returns:
        :class:`~ratedist.rd.closed_forms.ClosedForm`, or None when the compressor has no
        registered closed form or is configured with an option the closed form does not
        model.
    """
    comp = as_compressor(compressor)
    d = check_int("d", d, min_value=1)
    sigma = check_positive("sigma", sigma)
    name = comp.facts.name
    if name not in CLOSED_FORMS:
        return None
    func = CLOSED_FORMS.get(name)
    accepted = inspect.signature(func).parameters
    if any(k not in accepted for k in comp.facts.params):
        # A configuration option the closed form does not model: no closed form for it.
        return None
    return func(d, sigma=sigma, dtype=_default_dtype(), **comp.facts.params)


def _point(
    comp: Compressor, d: int, trials: int, cf: ClosedForm | None, mc: dict[str, float] | None
) -> RDPoint:
    mc = mc or {}
    if cf is None and not mc:
        raise ValueError(
            f"compressor {comp.facts.name!r} has no closed form; give trials >= 2 for Monte Carlo"
        )
    rate = cf.rate_bits if cf is not None and cf.rate_bits is not None else mc.get("rate_bits_mc")
    if rate is None:
        raise ValueError(
            f"compressor {comp.facts.name!r} has no closed-form container rate; give trials >= 2"
        )
    ent = cf.entropy_rate_bits if cf is not None and cf.entropy_rate_bits is not None else None
    if ent is None:
        ent = mc.get("entropy_rate_bits_mc")
    dist = None if cf is None else float(cf.distortion)
    d_used = dist if dist is not None else mc["distortion_mc"]
    d_sh = float(gaussian_distortion(rate))
    if d_used > 0:
        gap_db, gap_bits = (float(v) for v in gap_to_shannon(rate, d_used, variance=1.0))
    else:
        gap_db = gap_bits = None
    return RDPoint(
        compressor=comp.facts.name,
        params=dict(comp.facts.params),
        rate_bits=float(rate),
        entropy_rate_bits=None if ent is None else float(ent),
        distortion=dist,
        distortion_mc=mc.get("distortion_mc"),
        distortion_mc_se=mc.get("distortion_mc_se"),
        shannon_distortion=d_sh,
        gap_db=gap_db,
        gap_bits=gap_bits,
        rate_bits_mc=mc.get("rate_bits_mc"),
        entropy_rate_bits_mc=mc.get("entropy_rate_bits_mc"),
        exact=None if cf is None else bool(cf.exact),
        d=d,
        trials=trials if mc else 0,
        rate_bits_mc_se=mc.get("rate_bits_mc_se"),
        entropy_rate_bits_mc_se=mc.get("entropy_rate_bits_mc_se"),
        entropy_rate_bits_mc_bias=mc.get("entropy_rate_bits_mc_bias"),
        entropy_estimator=mc.get("entropy_estimator"),
    )


def monte_carlo_point(
    compressor: Any, d: int, *, trials: int, key: Any, sigma: float = 1.0
) -> RDPoint:
    """Monte Carlo (R, D) of the actual JAX compressor (no closed form consulted).

    Args:
        compressor: a :class:`Compressor` or a spec string (``"qsgd:s=4"``).
        d: dimension of the gradient.
        trials: independent draws of ``g`` (>= 2, for the standard error).
        key: JAX PRNG key.
        sigma: standard deviation of the coordinates.

    Returns:
        :class:`RDPoint` with ``distortion = None`` and rates from the MC means.

    Raises:
        ValueError/TypeError: bad compressor spec, d, trials, sigma (see
            :func:`mc_sigma_range`) or key.
    """
    comp = as_compressor(compressor)
    mc = monte_carlo_stats(comp, d, trials=trials, key=key, sigma=sigma)
    return _point(comp, int(d), int(trials), None, mc)


def closed_form_point(compressor: Any, d: int, *, sigma: float = 1.0) -> RDPoint:
    """Closed-form :class:`RDPoint` (no Monte Carlo); ValueError if none is registered."""
    comp = as_compressor(compressor)
    cf = closed_form(comp, d, sigma=sigma)
    return _point(comp, int(d), 0, cf, None)


def rd_point(
    compressor: Any,
    d: int,
    *,
    trials: int = 0,
    key: Any = None,
    sigma: float = 1.0,
) -> RDPoint:
    """Closed form and (when ``trials > 0``) Monte Carlo of one compressor, with the gap.

    Args:
        compressor: a :class:`Compressor` or a spec string.
        d: dimension.
        trials: Monte Carlo trials; 0 for closed form only.
        key: JAX PRNG key (required when ``trials > 0``).
        sigma: standard deviation of the coordinates.

    Returns:
        :class:`RDPoint`.

    Raises:
        ValueError: bad arguments (with ``trials > 0``, ``sigma`` outside
            :func:`mc_sigma_range`), or no closed form and no Monte Carlo requested.
    """
    comp = as_compressor(compressor)
    d = check_int("d", d, min_value=1)
    trials = check_int("trials", trials, min_value=0)
    if trials == 1:
        raise ValueError("trials must be 0 (closed form only) or >= 2, got 1")
    cf = closed_form(comp, d, sigma=sigma)
    mc = monte_carlo_stats(comp, d, trials=trials, key=key, sigma=sigma) if trials else None
    return _point(comp, d, trials, cf, mc)


def design_point(
    method: str,
    n_levels: int,
    d: int,
    *,
    trials: int = 0,
    key: Any = None,
    sigma: float = 1.0,
    float_bits: int = 32,
    **options: Any,
) -> RDPoint:
    """RD point of a designed scalar quantizer (``ratedist.quantizers.DESIGNS``) used as the
    ``scalar`` compressor with RMS normalization on Gaussian gradients.

    The design is made for a unit Gaussian with ``n_levels`` levels (``options`` go to the
    designer, e.g. ``entropy_bits=`` for ``"ecsq"``) and applied with the design's rounding.

    Args:
        method: a design name (``"lloyd-max"``, ``"uniform"``, ``"ecsq"``, ``"tnq"``, ...).
        n_levels: number of levels (>= 2).
        d: dimension.
        trials: Monte Carlo trials (0: closed form only).
        key: JAX PRNG key when ``trials > 0``.
        sigma: coordinate standard deviation.
        float_bits: width of the sent scale.
        **options: designer keyword options.

    Returns:
        :class:`RDPoint` whose ``params`` also record ``method``, ``n_levels`` and ``options``.

    Raises:
        ValueError: unknown method or bad design options.
    """
    n_levels = check_int("n_levels", n_levels, min_value=2)
    sol = DESIGNS.get(method)(Gaussian(1.0), n_levels, **options)
    q = sol.value if isinstance(sol.value, ScalarQuantizer) else sol.value.quantizer
    rounding = DESIGNS.facts(method).get("rounding", "deterministic")
    comp = make("scalar", quantizer=q, rounding=rounding, float_bits=float_bits)
    p = rd_point(comp, d, trials=trials, key=key, sigma=sigma)
    params = {**p.params, "method": method, "n_levels": n_levels, **options}
    return p._replace(params=params)


def _spec_string(name: str, params: Mapping[str, Any]) -> str | None:
    """``"name:key=value,..."`` for plain parameter values; None if one is not writable."""
    if not all(isinstance(v, int | float | str | bool) for v in params.values()):
        return None
    body = ",".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()
    )
    return f"{name}:{body}" if body else name


def default_specs() -> dict[str, list[str]]:
    """Default parameter sets per registered compressor, as spec strings (for ``--all``).

    Read from the registry: each compressor's ``rd_sweep`` fact (its RD-curve sweep), else
    its ``examples`` that can be written as spec strings. A compressor registered later
    (a plugin, a test) is included from then on.
    """
    out: dict[str, list[str]] = {}
    for name in COMPRESSORS.names():
        facts = COMPRESSORS.facts(name)
        sweep = facts.get("rd_sweep", facts.get("examples", [{}]))
        specs = [s for s in (_spec_string(name, p) for p in sweep) if s is not None]
        if specs:
            out[name] = specs
    return out


def curve_specs() -> dict[str, list[str]]:
    """Spec strings of the closed-form curve of every compressor with a closed form: its
    ``rd_curve`` fact (a denser sweep, for figures), else :func:`default_specs`' entry."""
    base = default_specs()
    out: dict[str, list[str]] = {}
    for name in COMPRESSORS.names():
        if name not in CLOSED_FORMS:
            continue
        curve = COMPRESSORS.facts(name).get("rd_curve")
        specs = base.get(name, []) if curve is None else [_spec_string(name, p) for p in curve]
        out[name] = [s for s in specs if s is not None]
    return out


class _DefaultParams(Mapping[str, list[str]]):
    """Read-only live view ``name -> default spec strings`` (:func:`default_specs`)."""

    def __getitem__(self, name: str) -> list[str]:
        return default_specs()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(default_specs())

    def __len__(self) -> int:
        return len(default_specs())

    def __repr__(self) -> str:
        return f"DEFAULT_PARAMS({default_specs()!r})"


#: Parameter sets used by ``ratedist rd --all`` and the RD figure (d around 10^3): a live
#: view of the registry's ``rd_sweep`` facts (kept for existing imports; see default_specs).
DEFAULT_PARAMS: Mapping[str, list[str]] = _DefaultParams()


__all__ = [
    "DEFAULT_PARAMS",
    "RDPoint",
    "as_compressor",
    "closed_form",
    "closed_form_point",
    "curve_specs",
    "default_specs",
    "design_point",
    "monte_carlo_point",
    "monte_carlo_stats",
    "rd_point",
]
