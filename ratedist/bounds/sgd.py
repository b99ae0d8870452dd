"""Compressed distributed SGD on a smooth nonconvex objective: unbiased, relative-variance,
biased and truncated (TNQSGD) compressors.

Common setting (every function below): ``f = (1/N) sum_i f_i`` is L-smooth and bounded below
by ``f*``; ``Delta0 = f(x^0) - f*``; worker ``i`` computes a stochastic gradient ``g_i`` with
``E[g_i] = ∇f_i(x)`` and ``E||g_i - ∇f_i(x)||^2 <= sigma^2``, sends ``C_i(g_i)`` with fresh
independent randomness, and the server steps ``x <- x - eta (1/N) sum_i C_i(g_i)``.

All bounds come from one descent-lemma step (derived symbolically in
:mod:`ratedist.symbolic.descent`, written up in ``docs/theory/bounds.md``)::

    E f(x^{t+1}) <= f(x^t) - (eta/2)||∇f(x^t)||^2 + (eta/2)||bias||^2 + (L eta^2/2) Var

so that ``(1/T) sum_{t<T} E||∇f(x^t)||^2 <= 2 Delta0/(eta T) + eta L Var + ||bias||^2``.
"""

from __future__ import annotations

from typing import Any

from ratedist._validation import check_choice, check_int, check_nonnegative, check_positive
from ratedist.bounds.core import SublinearBound, step_size_or_limit

_SMOOTH = "f = (1/N) sum_i f_i is L-smooth and bounded below (Delta0 = f(x^0) - f*)"
_SGD_NOISE = "E[g_i] = ∇f_i(x), E||g_i - ∇f_i(x)||^2 <= sigma^2, independent across workers"


def _check_common(delta0: Any, L: Any, n_workers: Any) -> tuple[float, float, int]:
    """Checked ``(delta0, L, N)``: the constants every compressed-SGD bound takes."""
    return (
        check_nonnegative("delta0", delta0),
        check_positive("L", L),
        check_int("n_workers", n_workers, min_value=1),
    )


def _descent_bound(
    delta0: float, eta: float, *, floor: float, theorem: str, assumptions: tuple[str, ...]
) -> SublinearBound:
    """The descent-lemma bound ``2 Delta0/(eta T) + floor`` at step size ``eta``."""
    return SublinearBound(
        transient=2.0 * delta0 / eta,
        floor=floor,
        step_size=eta,
        theorem=theorem,
        assumptions=assumptions,
    )


def sgd_step_size(L: Any, *, omega: Any = 0.0, n_workers: Any = 1) -> float:
    """Largest step size of the compressed-SGD bounds: ``1 / (L (1 + omega/N))``.

    ``omega = 0`` (absolute-variance or exact gradients) gives the classic ``1/L``.

    Args:
        L: smoothness constant of f.
        omega: relative variance of the unbiased compressor (``E||Q(v)-v||^2 <= omega||v||^2``).
        n_workers: N.

    Returns:
        The step-size limit.

    Raises:
        ValueError: if ``L <= 0``, ``omega < 0`` or ``n_workers < 1``.
    """
    L = check_positive("L", L)
    omega = check_nonnegative("omega", omega)
    n = check_int("n_workers", n_workers, min_value=1)
    return 1.0 / (L * (1.0 + omega / n))


def sgd_unbiased_bound(
    *,
    delta0: Any,
    L: Any,
    n_workers: Any,
    sigma_sq: Any = 0.0,
    eps_q: Any = 0.0,
    d: Any = 1,
    eta: Any = None,
) -> SublinearBound:
    """Compressed SGD with an unbiased compressor of ABSOLUTE variance ``d * eps_q``.

    ``(1/T) sum_{t<T} E||∇f(x^t)||^2 <= 2 Delta0/(eta T) + eta L (sigma^2 + d eps_q)/N``
    for ``0 < eta <= 1/L``.

    Assumptions:
        f = (1/N) sum f_i L-smooth, bounded below; unbiased stochastic gradients with variance
        ``<= sigma^2``; ``E[C(v)] = v`` and ``E||C(v) - v||^2 <= d eps_q`` for every input
        (e.g. stochastic rounding with per-coordinate variance ``<= eps_q``); independent
        randomness across workers and steps.

    Args:
        delta0: ``f(x^0) - f*`` (>= 0).
        L: smoothness constant.
        n_workers: N.
        sigma_sq: stochastic-gradient variance per worker (0 for full gradients).
        eps_q: per-coordinate compression variance.
        d: dimension.
        eta: step size; ``None`` takes ``1/L``.

    Returns:
        :class:`SublinearBound` with ``transient = 2 Delta0/eta`` and
        ``floor = eta L (sigma^2 + d eps_q)/N``.

    Raises:
        ValueError: on negative constants or ``eta > 1/L``.

    References:
        Standard descent-lemma argument (e.g. Ghadimi & Lan, arXiv 1309.5549, Thm 2.1 with
        constant step); in the quantised form used by TNQSGD, arXiv 2402.01160, Thm 1.
        Derivation: :func:`ratedist.symbolic.descent.sgd_bound`.
    """
    delta0, L, n = _check_common(delta0, L, n_workers)
    sigma_sq = check_nonnegative("sigma_sq", sigma_sq)
    eps_q = check_nonnegative("eps_q", eps_q)
    d = check_int("d", d, min_value=1)
    limit = sgd_step_size(L)
    eta = step_size_or_limit("eta", eta, limit)
    return _descent_bound(
        delta0,
        eta,
        floor=eta * L * (sigma_sq + d * eps_q) / n,
        theorem="unbiased compressed SGD, absolute variance (descent lemma; arXiv 2402.01160 Thm 1)",
        assumptions=(
            _SMOOTH,
            _SGD_NOISE,
            "E[C(v)] = v and E||C(v) - v||^2 <= d eps_q for every v, independent across workers",
            "0 < eta <= 1/L",
        ),
    )


def sgd_relative_bound(
    *,
    delta0: Any,
    L: Any,
    n_workers: Any,
    omega: Any,
    sigma_sq: Any = 0.0,
    dissimilarity_sq: Any = 0.0,
    eta: Any = None,
) -> SublinearBound:
    """Compressed SGD with an unbiased compressor of RELATIVE variance ``omega``.

    ``(1/T) sum E||∇f(x^t)||^2 <= 2 Delta0/(eta T) + eta L ((1 + omega) sigma^2 + omega zeta^2)/N``
    for ``0 < eta <= 1 / (L (1 + omega/N))``, where ``zeta^2 = dissimilarity_sq`` bounds the
    gradient dissimilarity ``(1/N) sum_i ||∇f_i(x)||^2 <= ||∇f(x)||^2 + zeta^2``.

    Derivation: ``E||ĝ||^2 <= (1 + omega/N)||∇f||^2 + ((1+omega) sigma^2 + omega zeta^2)/N``,
    so the descent lemma needs ``L eta (1 + omega/N) <= 1`` to keep ``-eta/2 ||∇f||^2``.
    With exact gradients on identical workers (``sigma = zeta = 0``) the floor vanishes and the
    compressor only shrinks the step size.

    Assumptions:
        f L-smooth, bounded below; unbiased stochastic gradients (variance ``<= sigma^2``);
        ``E[C(v)] = v``, ``E||C(v) - v||^2 <= omega ||v||^2``; independent randomness across
        workers; bounded dissimilarity ``zeta^2``.

    Args:
        delta0: ``f(x^0) - f*``.
        L: smoothness constant.
        n_workers: N.
        omega: relative variance (``>= 0``).
        sigma_sq: stochastic-gradient variance per worker.
        dissimilarity_sq: ``zeta^2`` (0 for identical local objectives).
        eta: step size; ``None`` takes ``1/(L (1 + omega/N))``.

    Returns:
        :class:`SublinearBound`.

    Raises:
        ValueError: on negative constants or a too-large ``eta``.

    References:
        Alistarh et al., QSGD, arXiv 1610.02132, Thm 3.4 (second-moment form);
        Khaled & Richtárik, arXiv 2002.03329 (relative-variance compressors).
        Derivation: :func:`ratedist.symbolic.descent.relative_variance_bound`.
    """
    delta0, L, n = _check_common(delta0, L, n_workers)
    omega = check_nonnegative("omega", omega)
    sigma_sq = check_nonnegative("sigma_sq", sigma_sq)
    zeta_sq = check_nonnegative("dissimilarity_sq", dissimilarity_sq)
    limit = sgd_step_size(L, omega=omega, n_workers=n)
    eta = step_size_or_limit("eta", eta, limit)
    return _descent_bound(
        delta0,
        eta,
        floor=eta * L * ((1.0 + omega) * sigma_sq + omega * zeta_sq) / n,
        theorem="unbiased compressed SGD, relative variance omega (descent lemma)",
        assumptions=(
            _SMOOTH,
            _SGD_NOISE,
            "E[C(v)] = v and E||C(v) - v||^2 <= omega ||v||^2, independent across workers",
            "(1/N) sum_i ||∇f_i(x)||^2 <= ||∇f(x)||^2 + zeta^2",
            "0 < eta <= 1/(L (1 + omega/N))",
        ),
    )


def sgd_biased_bound(
    *,
    delta0: Any,
    L: Any,
    n_workers: Any,
    bias_sq: Any,
    sigma_sq: Any = 0.0,
    eps_var: Any = 0.0,
    d: Any = 1,
    eta: Any = None,
) -> SublinearBound:
    """Compressed SGD with a BIASED compressor: variance term plus a bias floor.

    Let ``ĝ = (1/N) sum_i C_i(g_i)`` with ``E[ĝ | x] = ∇f(x) + beta(x)``,
    ``||beta(x)||^2 <= bias_sq`` and ``E||ĝ - E[ĝ|x]||^2 <= (sigma^2 + d eps_var)/N``. Then for
    ``0 < eta <= 1/L``::

        (1/T) sum_{t<T} E||∇f(x^t)||^2 <= 2 Delta0/(eta T) + eta L (sigma^2 + d eps_var)/N + bias_sq

    The bias floor does not shrink with N, T or eta. Key identity (checked in sympy):
    ``-<a, a + b> + ||a + b||^2/2 = -||a||^2/2 + ||b||^2/2``.

    Assumptions:
        f L-smooth, bounded below; the aggregate's conditional bias has squared norm
        ``<= bias_sq`` at every iterate; its conditional variance is ``<= (sigma^2 + d eps_var)/N``
        (true when each worker's message has variance ``<= sigma^2 + d eps_var`` and workers
        are independent).

    Args:
        delta0: ``f(x^0) - f*``.
        L: smoothness constant.
        n_workers: N.
        bias_sq: bound on ``||E[ĝ|x] - ∇f(x)||^2``.
        sigma_sq: stochastic-gradient variance per worker.
        eps_var: per-coordinate compression variance (about the compressor's mean).
        d: dimension.
        eta: step size; ``None`` takes ``1/L``.

    Returns:
        :class:`SublinearBound` whose floor includes ``bias_sq``.

    Raises:
        ValueError: on negative constants or ``eta > 1/L``.

    References:
        Ajalloeian & Stich, "On the convergence of SGD with biased gradients",
        arXiv 2008.00051, Thm 4 (with ``M = 0``, ``zeta^2 = bias_sq``).
        Derivation: :func:`ratedist.symbolic.descent.biased_bound`.
    """
    delta0, L, n = _check_common(delta0, L, n_workers)
    bias_sq = check_nonnegative("bias_sq", bias_sq)
    sigma_sq = check_nonnegative("sigma_sq", sigma_sq)
    eps_var = check_nonnegative("eps_var", eps_var)
    d = check_int("d", d, min_value=1)
    limit = sgd_step_size(L)
    eta = step_size_or_limit("eta", eta, limit)
    return _descent_bound(
        delta0,
        eta,
        floor=eta * L * (sigma_sq + d * eps_var) / n + bias_sq,
        theorem="biased compressed SGD with bias floor (descent lemma; arXiv 2008.00051 Thm 4)",
        assumptions=(
            _SMOOTH,
            "||E[ĝ|x] - ∇f(x)||^2 <= bias_sq at every iterate",
            "E||ĝ - E[ĝ|x]||^2 <= (sigma^2 + d eps_var)/N",
            "0 < eta <= 1/L",
        ),
    )


_TNQ_FORMS = ("paper", "rigorous")


def tnqsgd_bound(
    *,
    delta0: Any,
    L: Any,
    n_workers: Any,
    d: Any,
    variance_per_coord: Any,
    truncation_per_coord: Any,
    sigma_sq: Any = 0.0,
    eta: Any = None,
    form: str = "rigorous",
) -> SublinearBound:
    """TNQSGD: truncation to ``[-alpha, alpha]`` then unbiased stochastic rounding.

    Per-coordinate error of the quantizer splits into the rounding variance ``v`` (e.g. the
    ``Delta^2/4`` bound or the exact within-cell variance) and the truncation error
    ``t = E[(|g| - alpha)^2; |g| > alpha]``; the design's total is ``eps_Q = v + t``.

    * ``form="paper"`` (arXiv 2402.01160 Thm 1, treating ``eps_Q`` as variance):
      ``2 Delta0/(eta T) + eta L (sigma^2 + d eps_Q)/N``.
    * ``form="rigorous"`` (truncation is a bias): ``2 Delta0/(eta T) + eta L (sigma^2 + d v)/N
      + d t``. Clipping is 1-Lipschitz, so it does not increase the variance
      (``Var(clip(g)) <= Var(g)``); rounding adds ``<= d v``; by Jensen the aggregate's bias
      has ``||beta||^2 <= (1/N) sum_i E||clip(g_i) - g_i||^2 <= d t``. This is
      :func:`sgd_biased_bound` with ``bias_sq = d t``.

    Assumptions:
        as :func:`sgd_unbiased_bound` / :func:`sgd_biased_bound`; gradient coordinates follow
        the design's source model so that ``v`` and ``t`` are the per-coordinate averages;
        ``0 < eta <= 1/L``.

    Args:
        delta0: ``f(x^0) - f*``.
        L: smoothness constant.
        n_workers: N.
        d: dimension.
        variance_per_coord: rounding variance ``v`` of the design.
        truncation_per_coord: truncation error ``t`` of the design.
        sigma_sq: stochastic-gradient variance per worker.
        eta: step size; ``None`` takes ``1/L``.
        form: ``"paper"`` or ``"rigorous"``.

    Returns:
        :class:`SublinearBound`.

    Raises:
        ValueError: on negative constants, ``eta > 1/L`` or an unknown ``form``.

    References:
        TNQSGD, arXiv 2402.01160 (Thm 1 and the optimal design), arXiv 2402.01798 (power-law
        tails). The rigorous split is ours; see ``docs/theory/bounds.md``.
    """
    form = check_choice("form", form, _TNQ_FORMS)
    v = check_nonnegative("variance_per_coord", variance_per_coord)
    t = check_nonnegative("truncation_per_coord", truncation_per_coord)
    if form == "paper":
        out = sgd_unbiased_bound(
            delta0=delta0, L=L, n_workers=n_workers, sigma_sq=sigma_sq, eps_q=v + t, d=d, eta=eta
        )
        theorem = "TNQSGD, paper form (arXiv 2402.01160 Thm 1: eps_Q treated as variance)"
    else:
        d_int = check_int("d", d, min_value=1)
        out = sgd_biased_bound(
            delta0=delta0,
            L=L,
            n_workers=n_workers,
            bias_sq=d_int * t,
            sigma_sq=sigma_sq,
            eps_var=v,
            d=d_int,
            eta=eta,
        )
        theorem = "TNQSGD, rigorous form (truncation as bias floor d*t; arXiv 2402.01160)"
    return out._replace(
        theorem=theorem,
        assumptions=(
            *out.assumptions,
            "gradient coordinates follow the design's source model",
        ),
    )


_ERROR_KINDS = ("bound", "exact")


def tnqsgd_bound_for_design(
    design: Any,
    *,
    delta0: Any,
    L: Any,
    n_workers: Any,
    d: Any,
    sigma_sq: Any = 0.0,
    eta: Any = None,
    form: str = "rigorous",
    error: str = "bound",
) -> SublinearBound:
    """:func:`tnqsgd_bound` with a designed quantizer's per-coordinate error plugged in.

    Args:
        design: a :class:`ratedist.quantizers.truncated.TruncationDesign` (anything with
            ``bound_mse`` and ``exact.variance`` / ``exact.bias``), designed for the gradient
            coordinates in their own units (e.g. ``optimal_truncation(Laplace(gamma), s)``).
        delta0, L, n_workers, d, sigma_sq, eta, form: as :func:`tnqsgd_bound`.
        error: ``"bound"`` — the papers' objective: rounding variance bounded via
            ``Delta^2/4`` (``bound_mse - exact.bias``; for Laplace(gamma) at the optimum
            ``bound_mse = 27 gamma^2/(s + 3 sqrt(6)/2)^2``) — or ``"exact"`` — the exact
            within-cell rounding variance of the design (``exact.variance``). The truncation
            error is ``exact.bias`` in both.

    Returns:
        :class:`SublinearBound`.

    Raises:
        TypeError: if ``design`` lacks ``bound_mse``/``exact``.
        ValueError: unknown ``error`` or ``form``, or bad constants.

    References:
        arXiv 2402.01160 (Thm 1 with the optimal design of Sec. IV).
    """
    error = check_choice("error", error, _ERROR_KINDS)
    exact = getattr(design, "exact", None)
    if exact is None or not hasattr(design, "bound_mse"):
        raise TypeError(
            f"design must be a TruncationDesign (with bound_mse and exact), got "
            f"{type(design).__name__}"
        )
    trunc = float(exact.bias)
    var = float(design.bound_mse) - trunc if error == "bound" else float(exact.variance)
    out = tnqsgd_bound(
        delta0=delta0,
        L=L,
        n_workers=n_workers,
        d=d,
        variance_per_coord=max(var, 0.0),
        truncation_per_coord=trunc,
        sigma_sq=sigma_sq,
        eta=eta,
        form=form,
    )
    return out._replace(theorem=f"{out.theorem}; design error: {error}")


def best_step_size(eps: Any, bound_at: Any, *, eta_max: Any) -> float:
    """Step size minimising the iterations to reach ``eps`` for a bound of the form
    ``a/(eta T) + c eta + b`` (every compressed-SGD bound here).

    ``T(eta) = a / (eta (eps - b - c eta))`` is minimised at ``eta = (eps - b)/(2c)``,
    capped at ``eta_max``.

    Args:
        eps: target for the average squared gradient norm.
        bound_at: callable ``eta -> SublinearBound`` (e.g. ``lambda e: sgd_unbiased_bound(...,
            eta=e)``); ``c`` and ``b`` are read off two evaluations (the floor is affine in eta).
        eta_max: the theorem's largest step size.

    Returns:
        The step size.

    Raises:
        ValueError: if ``eps`` is not above the bias floor ``b``.
    """
    e = check_positive("eps", eps)
    eta_max = check_positive("eta_max", eta_max)
    f1 = bound_at(eta_max).floor
    f2 = bound_at(eta_max / 2).floor
    c = (f1 - f2) / (eta_max / 2)
    b = f1 - c * eta_max
    if e <= b * (1 + 1e-12):
        raise ValueError(f"eps must exceed the bias floor {b!r}, got {e!r}")
    if c <= 0:
        return eta_max
    return min(eta_max, (e - b) / (2 * c))
