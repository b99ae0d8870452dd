"""Three point compressors (3PC; arXiv 2202.00998): constants (A, B), step size, rates.

A 3PC ``C_{h,y}(x)`` satisfies ``E||C_{h,y}(x) - x||^2 <= (1 - A)||h - y||^2 + B||x - y||^2``
(h = current estimator, y = old local gradient, x = new local gradient). Every variant's
``(A, B)`` is in the registry :data:`THREE_PC` (facts: ``params``, the constants it needs;
``deterministic_if``: when the compressor uses no randomness, so the Lyapunov inequality holds
on every path).

Setting of every theorem here: ``f = (1/n) sum_i f_i`` bounded below by ``f*``;
``f`` is ``L_-``-smooth; ``(1/n) sum_i ||∇f_i(x) - ∇f_i(y)||^2 <= L_+^2 ||x - y||^2``; full
local gradients; ``x^{t+1} = x^t - gamma g^t`` with ``g^t = (1/n) sum_i g_i^t``;
``G^t = (1/n) sum_i ||g_i^t - ∇f_i(x^t)||^2``; ``Delta0 = f(x^0) - f*``. The algebra is in
:mod:`ratedist.symbolic.descent` and ``docs/theory/bounds.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ratedist._registry import Registry
from ratedist._validation import check_array, check_int, check_nonnegative, check_positive
from ratedist.bounds.core import (
    LinearBound,
    SublinearBound,
    check_fraction,
    step_size_or_limit,
)

REF = "Richtárik et al., 3PC: Three Point Compressors, arXiv 2202.00998"

_ASSUMPTIONS = (
    "f = (1/n) sum_i f_i bounded below by f*, f is L_- -smooth",
    "(1/n) sum_i ||∇f_i(x) - ∇f_i(y)||^2 <= L_+^2 ||x - y||^2",
    "full local gradients (no stochastic-gradient noise)",
    "E||C_{h,y}(x) - x||^2 <= (1 - A)||h - y||^2 + B||x - y||^2 with 0 < A <= 1, B >= 0",
)


class ThreePCConstants(NamedTuple):
    """The two constants of a 3PC: ``A`` in ``(0, 1]`` and ``B >= 0``."""

    A: float
    B: float


#: name -> function(**params) -> ThreePCConstants; facts: ``params`` (tuple of names),
#: ``label`` (for plots), ``deterministic_if`` (plain-language condition), ``is_3pc``.
THREE_PC: Registry[Callable[..., ThreePCConstants]] = Registry("3PC variant")


def _ef21_ab(alpha: float) -> ThreePCConstants:
    # A = 1 - sqrt(1 - alpha), B = (1 - alpha)/(1 - sqrt(1 - alpha)); alpha = 1 gives (1, 0)
    r = math.sqrt(1.0 - alpha)
    return ThreePCConstants(1.0 - r, (1.0 - alpha) / (1.0 - r))


@THREE_PC.register("gd", params=(), label="GD", deterministic_if="always", is_3pc=True)
def gd() -> ThreePCConstants:
    """GD: ``C_{h,y}(x) = x``; ``A = 1``, ``B = 0``."""
    return ThreePCConstants(1.0, 0.0)


@THREE_PC.register(
    "ef21", params=("alpha",), label="EF21", deterministic_if="C deterministic", is_3pc=True
)
def ef21(*, alpha: Any) -> ThreePCConstants:
    """EF21: ``h + C(x - h)``; ``A = 1 - sqrt(1 - alpha)``, ``B = (1 - alpha)/A``.

    References:
        arXiv 2202.00998, Section 3 (EF21); Richtárik et al., arXiv 2106.05203.
    """
    return _ef21_ab(check_fraction("alpha", alpha))


@THREE_PC.register("lag", params=("zeta",), label="LAG", deterministic_if="always", is_3pc=True)
def lag(*, zeta: Any) -> ThreePCConstants:
    """LAG: send ``x`` if ``||x - h||^2 > zeta ||x - y||^2`` else keep ``h``; ``A = 1, B = zeta``.

    References:
        arXiv 2202.00998, Section 3.
    """
    return ThreePCConstants(1.0, check_nonnegative("zeta", zeta))


@THREE_PC.register(
    "clag", params=("alpha", "zeta"), label="CLAG", deterministic_if="C deterministic",
    is_3pc=True,
)  # fmt: skip
def clag(*, alpha: Any, zeta: Any) -> ThreePCConstants:
    """CLAG: EF21 step when triggered; ``A = 1 - sqrt(1-alpha)``, ``B = max{(1-alpha)/A, zeta}``.

    References:
        arXiv 2202.00998, Section 3.
    """
    base = _ef21_ab(check_fraction("alpha", alpha))
    return ThreePCConstants(base.A, max(base.B, check_nonnegative("zeta", zeta)))


@THREE_PC.register(
    "tpc_v1", params=("alpha",), label="3PCv1", deterministic_if="C deterministic", is_3pc=True
)
def tpc_v1(*, alpha: Any) -> ThreePCConstants:
    """3PCv1: ``y + C(x - y)``; ``A = 1``, ``B = 1 - alpha``.

    References:
        arXiv 2202.00998, Section 3 (3PCv1).
    """
    return ThreePCConstants(1.0, 1.0 - check_fraction("alpha", alpha))


@THREE_PC.register(
    "tpc_v2", params=("alpha", "omega"), label="3PCv2", deterministic_if="never (Q is random)",
    is_3pc=True,
)  # fmt: skip
def tpc_v2(*, alpha: Any, omega: Any) -> ThreePCConstants:
    """3PCv2: ``b + C(x - b)``, ``b = h + Q(x - y)``; ``A = alpha``, ``B = (1 - alpha) omega``.

    References:
        arXiv 2202.00998, Section 3 (3PCv2).
    """
    a = check_fraction("alpha", alpha)
    return ThreePCConstants(a, (1.0 - a) * check_nonnegative("omega", omega))


@THREE_PC.register(
    "tpc_v3", params=("alpha", "A1", "B1"), label="3PCv3",
    deterministic_if="C and the inner 3PC deterministic", is_3pc=True,
)  # fmt: skip
def tpc_v3(*, alpha: Any, A1: Any, B1: Any) -> ThreePCConstants:
    """3PCv3: ``b + C(x - b)`` with ``b`` any 3PC ``(A1, B1)``;
    ``A = 1 - (1 - alpha)(1 - A1)``, ``B = (1 - alpha) B1``.

    References:
        arXiv 2202.00998, Section 3 (3PCv3).
    """
    a = check_fraction("alpha", alpha)
    a1 = check_fraction("A1", A1)
    return ThreePCConstants(1.0 - (1.0 - a) * (1.0 - a1), (1.0 - a) * check_nonnegative("B1", B1))


@THREE_PC.register(
    "tpc_v4", params=("alpha1", "alpha2"), label="3PCv4",
    deterministic_if="C1 and C2 deterministic", is_3pc=True,
)  # fmt: skip
def tpc_v4(*, alpha1: Any, alpha2: Any) -> ThreePCConstants:
    """3PCv4: ``b + C1(x - b)``, ``b = h + C2(x - h)``: EF21 constants with
    ``alpha_bar = 1 - (1 - alpha1)(1 - alpha2)``.

    References:
        arXiv 2202.00998, Section 3 (3PCv4).
    """
    a1 = check_fraction("alpha1", alpha1)
    a2 = check_fraction("alpha2", alpha2)
    return _ef21_ab(1.0 - (1.0 - a1) * (1.0 - a2))


@THREE_PC.register(
    "tpc_v5", params=("alpha", "p"), label="3PCv5", deterministic_if="never (shared coin)",
    is_3pc=True,
)  # fmt: skip
def tpc_v5(*, alpha: Any, p: Any) -> ThreePCConstants:
    """3PCv5: ``x`` w.p. ``p`` (shared coin) else ``h + C(x - y)``;
    ``A = 1 - sqrt(1 - p)``, ``B = (1 - p)(1 - alpha)/(1 - sqrt(1 - p))``.

    References:
        arXiv 2202.00998, Section 3 (3PCv5).
    """
    a = check_fraction("alpha", alpha)
    pp = check_fraction("p", p)
    r = math.sqrt(1.0 - pp)
    return ThreePCConstants(1.0 - r, (1.0 - pp) * (1.0 - a) / (1.0 - r))


@THREE_PC.register(
    "marina", params=("p", "omega", "n_workers"), label="MARINA",
    deterministic_if="never (coin and Q are random)", is_3pc=False,
)  # fmt: skip
def marina(*, p: Any, omega: Any, n_workers: Any) -> ThreePCConstants:
    """MARINA (not a 3PC; same Lyapunov algebra): ``A = p``, ``B = (1 - p) omega / n``.

    Here ``G^t = ||g^t - ∇f(x^t)||^2`` (the AGGREGATED estimator error) and ``g^0 = ∇f(x^0)``.

    References:
        Gorbunov et al., MARINA, arXiv 2102.07845, Thm 2.1; arXiv 2202.00998, Section 5.
    """
    pp = check_fraction("p", p)
    om = check_nonnegative("omega", omega)
    n = check_int("n_workers", n_workers, min_value=1)
    return ThreePCConstants(pp, (1.0 - pp) * om / n)


def three_pc_constants(name: str, **params: Any) -> ThreePCConstants:
    """``(A, B)`` of a registered variant.

    Args:
        name: a name in :data:`THREE_PC` (``"ef21"``, ``"lag"``, ``"tpc_v2"``, ...).
        **params: exactly the variant's ``params`` fact (e.g. ``alpha=0.1`` for EF21).

    Returns:
        :class:`ThreePCConstants`.

    Raises:
        ValueError: unknown name, missing/unexpected parameter, or a bad parameter value.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    fn = THREE_PC.get(name)
    wanted = set(THREE_PC.facts(name)["params"])
    if set(params) != wanted:
        raise ValueError(
            f"params for {name!r} must be exactly {sorted(wanted)}, got {sorted(params)}"
        )
    return fn(**params)


def _ab(A: Any, B: Any) -> tuple[float, float]:
    return check_fraction("A", A), check_nonnegative("B", B)


def _l_minus_plus_sqrt(L_minus: Any, L_plus: Any, A: Any, B: Any, factor: float) -> float:
    """``L_- + L_+ sqrt(factor B/A)`` with every argument checked."""
    A, B = _ab(A, B)
    return check_positive("L_minus", L_minus) + check_nonnegative("L_plus", L_plus) * math.sqrt(
        factor * B / A
    )


def m1(L_minus: Any, L_plus: Any, A: Any, B: Any) -> float:
    """``M1 = L_- + L_+ sqrt(B/A)`` (arXiv 2202.00998, Section 5, nonconvex case)."""
    return _l_minus_plus_sqrt(L_minus, L_plus, A, B, 1.0)


def m2(L_minus: Any, L_plus: Any, A: Any, B: Any) -> float:
    """``M2 = L_- + L_+ sqrt(2B/A)`` (PL case)."""
    return _l_minus_plus_sqrt(L_minus, L_plus, A, B, 2.0)


def three_pc_step_size(L_minus: Any, L_plus: Any, A: Any, B: Any) -> float:
    """The theorem's step size ``gamma = 1/M1``.

    Raises:
        ValueError: on ``L_minus <= 0``, ``L_plus < 0``, ``A`` outside ``(0, 1]``, ``B < 0``.
    """
    return 1.0 / m1(L_minus, L_plus, A, B)


def three_pc_step_size_exact(L_minus: Any, L_plus: Any, A: Any, B: Any) -> float:
    """Largest ``gamma`` for which the Lyapunov step itself goes through:
    the positive root of ``1/gamma - L_- - gamma B L_+^2/A = 0``, i.e.
    ``2 / (L_- + sqrt(L_-^2 + 4 B L_+^2 / A))`` (>= 1/M1; equal when ``B = 0``).

    The published theorem uses the simpler ``1/M1``; this value is the exact limit of the same
    proof (derived in :func:`ratedist.symbolic.descent.three_pc_step_condition`).
    """
    A, B = _ab(A, B)
    Lm = check_positive("L_minus", L_minus)
    Lp = check_nonnegative("L_plus", L_plus)
    return 2.0 / (Lm + math.sqrt(Lm * Lm + 4.0 * B * Lp * Lp / A))


def three_pc_bound(
    *,
    delta0: Any,
    L_minus: Any,
    L_plus: Any,
    A: Any,
    B: Any,
    G0: Any = 0.0,
    gamma: Any = None,
) -> SublinearBound:
    """3PC nonconvex rate: ``E||∇f(x̂_T)||^2 <= 2 Delta0/(gamma T) + E[G^0]/(A T)``.

    ``x̂_T`` is uniform over ``x^0, ..., x^{T-1}``, so the left side is the average of
    ``E||∇f(x^t)||^2`` over ``t < T``. Proof: the Lyapunov function
    ``Phi^t = f(x^t) - f* + gamma/(2A) G^t`` satisfies
    ``E Phi^{t+1} <= Phi^t - (gamma/2)||∇f(x^t)||^2`` for ``0 < gamma <= 1/M1``; for a
    deterministic compressor this holds on every path (see :func:`lyapunov_slack`).

    Assumptions:
        see module docstring; ``0 < gamma <= 1/M1``, ``M1 = L_- + L_+ sqrt(B/A)``.

    Args:
        delta0: ``f(x^0) - f*``.
        L_minus: ``L_-``.
        L_plus: ``L_+`` (exact value or the ``sqrt(mean L_i^2)`` upper bound; either is valid).
        A: 3PC constant in ``(0, 1]``.
        B: 3PC constant ``>= 0``.
        G0: ``E[G^0]`` (0 when ``g_i^0 = ∇f_i(x^0)``).
        gamma: step size; ``None`` takes ``1/M1``.

    Returns:
        :class:`SublinearBound` with ``floor = 0``.

    Raises:
        ValueError: on bad constants or ``gamma > 1/M1``.

    References:
        arXiv 2202.00998, Section 5, general nonconvex theorem (its Lyapunov proof is
        re-derived in :mod:`ratedist.symbolic.descent`).
    """
    delta0 = check_nonnegative("delta0", delta0)
    A, B = _ab(A, B)
    G0 = check_nonnegative("G0", G0)
    limit = three_pc_step_size(L_minus, L_plus, A, B)
    gamma = step_size_or_limit("gamma", gamma, limit)
    return SublinearBound(
        transient=2.0 * delta0 / gamma + G0 / A,
        floor=0.0,
        step_size=gamma,
        theorem=f"{REF}, nonconvex theorem (gamma <= 1/M1)",
        assumptions=(*_ASSUMPTIONS, "0 < gamma <= 1/M1, M1 = L_- + L_+ sqrt(B/A)"),
    )


def three_pc_pl_bound(
    *,
    delta0: Any,
    L_minus: Any,
    L_plus: Any,
    A: Any,
    B: Any,
    mu: Any,
    G0: Any = 0.0,
    gamma: Any = None,
) -> LinearBound:
    """3PC under the PL condition: ``E[f(x^T) - f*] <= (1 - gamma mu)^T (Delta0 + gamma G^0/A)``.

    Derived here (``docs/theory/bounds.md``; same algebra as the paper's PL theorem and EF21's
    Thm 2): with ``Psi^t = f(x^t) - f* + (gamma/A) G^t``,
    ``E Psi^{t+1} <= (1 - gamma mu) Psi^t`` whenever ``gamma <= 1/M2`` (the ``||x^{t+1} -
    x^t||^2`` term is non-positive) and ``gamma <= A/(2 mu)`` (``1 - A/2 <= 1 - gamma mu``),
    with ``M2 = L_- + L_+ sqrt(2B/A)``. Since ``G^T >= 0`` the same bound holds for
    ``E[f(x^T) - f*]``; multiply by ``2 L_-`` for ``E||∇f(x^T)||^2``.

    Assumptions:
        module assumptions plus PL: ``||∇f(x)||^2 >= 2 mu (f(x) - f*)`` for all x;
        ``0 < gamma <= min{1/M2, A/(2 mu)}``.

    Args:
        delta0: ``f(x^0) - f*``.
        L_minus: ``L_-``.
        L_plus: ``L_+``.
        A: 3PC constant in ``(0, 1]``.
        B: 3PC constant ``>= 0``.
        mu: PL constant (> 0; for a mu-strongly convex f, mu itself).
        G0: ``E[G^0]``.
        gamma: step size; ``None`` takes ``min{1/M2, A/(2 mu)}``.

    Returns:
        :class:`LinearBound` with ``rate = 1 - gamma mu`` and
        ``scale = Delta0 + gamma G0 / A``.

    Raises:
        ValueError: on bad constants or a step size above the limit.

    References:
        arXiv 2202.00998, PL theorem of Section 5; EF21, arXiv 2106.05203, Thm 2.
    """
    delta0 = check_nonnegative("delta0", delta0)
    A, B = _ab(A, B)
    mu = check_positive("mu", mu)
    G0 = check_nonnegative("G0", G0)
    limit = min(1.0 / m2(L_minus, L_plus, A, B), A / (2.0 * mu))
    gamma = step_size_or_limit("gamma", gamma, limit)
    return LinearBound(
        scale=delta0 + gamma * G0 / A,
        rate=1.0 - gamma * mu,
        step_size=gamma,
        theorem=f"{REF}, PL theorem (gamma <= min(1/M2, A/(2 mu)))",
        assumptions=(
            *_ASSUMPTIONS,
            "PL: ||∇f(x)||^2 >= 2 mu (f(x) - f*)",
            "0 < gamma <= min{1/M2, A/(2 mu)}, M2 = L_- + L_+ sqrt(2B/A)",
        ),
    )


def marina_bound(
    *,
    delta0: Any,
    L_minus: Any,
    L_plus: Any,
    p: Any,
    omega: Any,
    n_workers: Any,
    G0: Any = 0.0,
    gamma: Any = None,
) -> SublinearBound:
    """MARINA: the 3PC rate with ``A = p``, ``B = (1 - p) omega / n``.

    ``E||∇f(x̂_T)||^2 <= 2 Delta0/(gamma T) + G0/(p T)`` for ``gamma <= 1/(L_- + L_+
    sqrt((1 - p) omega/(p n)))``; ``G^0 = ||g^0 - ∇f(x^0)||^2`` is 0 with the usual start
    ``g^0 = ∇f(x^0)``.

    Assumptions:
        module assumptions; Q unbiased with relative variance ``omega``, independent across
        workers; a shared coin with probability ``p`` of sending full gradients.

    References:
        Gorbunov et al., MARINA, arXiv 2102.07845, Thm 2.1; arXiv 2202.00998, Section 5.
    """
    ab = marina(p=p, omega=omega, n_workers=n_workers)
    out = three_pc_bound(
        delta0=delta0, L_minus=L_minus, L_plus=L_plus, A=ab.A, B=ab.B, G0=G0, gamma=gamma
    )
    return out._replace(
        theorem="Gorbunov et al., MARINA, arXiv 2102.07845, Thm 2.1 (A = p, B = (1-p) omega/n)",
        assumptions=(
            *_ASSUMPTIONS[:3],
            "Q unbiased with relative variance omega, independent across workers; shared coin p",
            "0 < gamma <= 1/M1 with A = p, B = (1 - p) omega / n",
        ),
    )


def lyapunov(f_gap: Any, G: Any, *, gamma: Any, A: Any) -> np.ndarray:
    """``Phi^t = f(x^t) - f* + gamma/(2A) G^t`` for arrays of ``f_gap`` and ``G``."""
    f_gap = check_array("f_gap", f_gap, ndim=1)
    G = check_array("G", G, ndim=1)
    if f_gap.shape != G.shape:
        raise ValueError(f"G must have the shape of f_gap {f_gap.shape}, got {G.shape}")
    gamma = check_positive("gamma", gamma)
    A = check_fraction("A", A)
    return f_gap + gamma / (2.0 * A) * G


def lyapunov_slack(f_gap: Any, G: Any, grad_norm_sq: Any, *, gamma: Any, A: Any) -> np.ndarray:
    """``Phi^t - (gamma/2)||∇f(x^t)||^2 - Phi^{t+1}`` for ``t = 0..T-2`` (>= 0 if it holds).

    For a deterministic 3PC and ``gamma <= 1/M1`` every entry is non-negative (up to float
    round-off); negative entries are violations of the Lyapunov step.

    Args:
        f_gap: ``f(x^t) - f*``, shape ``(T,)``.
        G: ``G^t``, shape ``(T,)``.
        grad_norm_sq: ``||∇f(x^t)||^2``, shape ``(T,)``.
        gamma: step size used.
        A: 3PC constant.

    Returns:
        Array of shape ``(T - 1,)``.
    """
    phi = lyapunov(f_gap, G, gamma=gamma, A=A)
    g2 = check_array("grad_norm_sq", grad_norm_sq, ndim=1)
    if g2.shape != phi.shape:
        raise ValueError(f"grad_norm_sq must have the shape of f_gap {phi.shape}, got {g2.shape}")
    return phi[:-1] - 0.5 * float(gamma) * g2[:-1] - phi[1:]
