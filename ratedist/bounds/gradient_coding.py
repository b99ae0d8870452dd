"""SGD bounds for 1-bit gradient coding with stragglers (unbiased design).

Design (SPEC §4; :mod:`ratedist.sim.codes`, :mod:`ratedist.sim.coded`): the data are ``k``
partitions, ``f = (1/k) sum_j f_j``, ``g_j = ∇f_j(x)/k`` (so ``sum_j g_j = ∇f``); worker ``i``
holds the partitions of row ``i`` of ``B`` (``n x k``) and sends ``Q(y_i)``,
``y_i = sum_j B_ij g_j``, with ``Q`` the unbiased stochastic sign (fresh randomness per worker
and step); the server forms ``g = sum_i a_i(mask) Q(y_i)`` with the code's decoding weights.
Write ``c(mask)^T = a(mask)^T B`` for the decoded partition coefficients.

If ``E c = 1`` over the straggler law (exact codes with at most ``s`` stragglers, or unbiased
rescaling), ``g`` is unbiased and its variance splits without cross terms (the quantization
noise has mean zero given the mask, and is independent across workers)::

    E||g − ∇f||^2 = sum_i E[a_i^2] E||Q(y_i) − y_i||^2          (sigma_q^2, quantization)
                  + E||sum_j (c_j − 1) g_j||^2                   (sigma_s^2, stragglers)
                  [+ sum_i E[a_i^2] sum_j B_ij^2 sigma_j^2 / k^2] (the partitions' own noise)

with ``E||Q(y) − y||^2 = d R^2 − ||y||^2`` (stochastic sign, ``||y||_inf <= R``): at most
``d R^2`` for a known bound ``R`` and ``(d − 1)||y||^2`` with ``R = ||y||_2`` sent. Under
``||∇f_j|| <= G_j`` for all ``x`` (bounded partition gradients), ``||y_i|| <= sum_j |B_ij|
G_j / k`` and ``sigma_s^2 <= sum_{j,l} |M_jl| G_j G_l / k^2`` with
``M = E[(c − 1)(c − 1)^T]``. Every such ``sigma^2`` feeds the SGD bounds below, which hold
for ANY unbiased estimator with ``E||g^t − ∇f(x^t)||^2 <= sigma^2`` at every step.

Bounds (``x^{t+1} = x^t − gamma_t g^t``; derivations in
:mod:`ratedist.symbolic.gradient_coding`, write-up in ``docs/theory/gradient_coding.md``):

* convex, L-smooth, ``gamma <= 1/L``: ``(1/T) sum_{t=1}^{T} E f(x^t) − f* <= ||x^0 −
  x*||^2/(2 gamma T) + gamma (1 + L gamma) sigma^2/2`` (``<= ... + gamma sigma^2``), which
  bounds ``E f(x̄_T) − f*`` for the average ``x̄_T = (1/T) sum_{t=1}^{T} x^t`` of the iterates
  AFTER each step (Jensen);
* nonconvex, L-smooth, ``f >= f*``, ``gamma <= 1/L``: ``(1/T) sum_{t<T} E||∇f(x^t)||^2 <=
  2 (f(x^0) − f*)/(gamma T) + L gamma sigma^2``;
* horizon steps ``gamma = min(1/L, c/sqrt(T))``: both ``O(1/sqrt(T))`` (slope −1/2 in
  log-log), best ``c`` in closed form;
* diminishing steps ``gamma_t = gamma0/sqrt(t + offset)``: ``gamma_t``-weighted averages,
  ``O(log T/sqrt(T))`` (:class:`~ratedist.bounds.core.DiminishingStepBound`).

References:
    1-bit GC-DL: C. Li, M. Skoglund, "Distributed Learning based on 1-Bit Gradient Coding in
    the Presence of Stragglers", arXiv 2403.14716 (convex and nonconvex guarantees; its exact
    encoder and theorem constants were not available to us: these bounds are derived here).
    Tandon et al., arXiv 1612.03301 (FRC/CRC); Bitar et al., arXiv 1905.05383 (random
    replication with unbiased rescaling); Ghadimi & Lan, arXiv 1309.5549 (nonconvex SGD);
    Bubeck, arXiv 1405.4980, Ch. 6 (convex smooth stochastic optimization, the same
    ``sqrt(2) R sigma / sqrt(T)`` leading term).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import (
    check_array,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_real,
)
from ratedist.bounds.core import (
    DiminishingStepBound,
    SublinearBound,
    _check_steps,
    _scalar_or_array,
    step_size_or_limit,
)
from ratedist.bounds.decoding_moments import DecodingMoments, _square
from ratedist.bounds.sgd import sgd_unbiased_bound

#: Scales of the stochastic sign (``ratedist.compressors.onebit``): the message mse model.
SCALES = ("bound", "l2", "linf")

_SMOOTH = "f is L-smooth"
_UNBIASED = (
    "E[g^t | x^t] = ∇f(x^t) (unbiased decoding: E c(mask) = 1, unbiased quantizer with fresh "
    "randomness per worker and step)"
)
_VARIANCE = "E||g^t − ∇f(x^t)||^2 <= sigma^2 at every step t"
_CONVEX_QUANTITY = "(1/T) sum_{t=1}^{T} E f(x^t) − f* (>= E f(x̄_T) − f*, x̄_T = mean of x^1..x^T)"


# --------------------------------------------------------------------------- variance terms
def onebit_message_mse(
    dim: Any, scale: str, *, R: Any = None, norm_sq: Any = None, inf_norm_sq: Any = None
) -> Any:
    """``E||Q(v) − v||^2`` of the stochastic sign on one ``dim``-vector message: exact when
    the message's norms are given, its worst case otherwise.

    * ``"bound"`` (known ``R``, valid for ``||v||_inf <= R``): ``d R^2 − ||v||^2``, or
      ``d R^2`` without ``norm_sq``;
    * ``"l2"`` (``R = ||v||_2``): ``(d − 1) ||v||^2`` (needs ``norm_sq``; may be a bound);
    * ``"linf"`` (``R = ||v||_inf``): ``d ||v||_inf^2 − ||v||^2``, or the worst case
      ``(d − 1) ||v||^2`` without ``inf_norm_sq``.

    Args:
        dim: ``d``.
        scale: ``"bound"``, ``"l2"`` or ``"linf"``.
        R: the known bound (``scale="bound"``).
        norm_sq: ``||v||_2^2`` (scalar or array: one per message).
        inf_norm_sq: ``||v||_inf^2`` (``scale="linf"``).

    Raises:
        ValueError: unknown scale, ``R <= 0`` or missing with ``"bound"``, ``norm_sq``
            missing with ``"l2"``/``"linf"``, negative norms.

    References:
        ``ratedist.symbolic.onebit.mse_coordinate`` (``R^2 − v^2`` per coordinate).
    """
    d = check_int("dim", dim, min_value=1)
    scale = check_choice("scale", scale, SCALES)
    sq = None if norm_sq is None else _nonnegative_array("norm_sq", norm_sq)
    if scale == "bound":
        if R is None:
            raise ValueError("R must be given (the known bound, > 0) with scale='bound', got None")
        R = check_positive("R", R)
        return _scalar_or_array(d * R * R - (0.0 if sq is None else sq))
    if sq is None:
        raise ValueError(f"norm_sq must be given (||v||^2 or a bound) with scale={scale!r}")
    if scale == "linf" and inf_norm_sq is not None:
        inf = _nonnegative_array("inf_norm_sq", inf_norm_sq)
        return _scalar_or_array(d * inf - sq)
    return _scalar_or_array((d - 1) * sq)


def _nonnegative_array(name: str, value: Any) -> np.ndarray:
    arr = check_array(name, value)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return arr


def message_norm_bounds(B: Any, partition_grad_bound: Any) -> np.ndarray:
    """``||y_i|| <= sum_j |B_ij| G_j / k`` (any norm; triangle inequality) from bounds
    ``||∇f_j|| <= G_j`` (a scalar ``G`` or one per partition).

    Raises:
        ValueError: ``B`` not 2-D, negative or mis-shaped ``partition_grad_bound``.
    """
    B = check_array("B", B, ndim=2)
    k = B.shape[1]
    G = np.broadcast_to(_partition_vector("partition_grad_bound", partition_grad_bound, k), (k,))
    return np.abs(B) @ G / k


def _partition_vector(name: str, value: Any, k: int) -> np.ndarray:
    arr = _nonnegative_array(name, value)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != k):
        raise ValueError(f"{name} must be a scalar or have shape ({k},), got shape {arr.shape}")
    return arr


def quantization_variance(weight_sq: Any, message_mse: Any) -> float:
    """``sigma_q^2 = sum_i E[a_i^2] E||Q(y_i) − y_i||^2`` (scalar ``message_mse``: the same
    bound for every worker, i.e. ``E||a||^2 x mse``).

    Raises:
        ValueError: negative or mis-shaped inputs.
    """
    w = _nonnegative_array("weight_sq", weight_sq)
    mse = _nonnegative_array("message_mse", message_mse)
    if mse.ndim and mse.shape != w.shape:
        raise ValueError(f"message_mse must be a scalar or have shape {w.shape}, got {mse.shape}")
    return float(np.sum(w * mse))


def straggler_variance_bound(coefficient_second: Any, partition_grad_bound: Any) -> float:
    """``sigma_s^2 = E||sum_j (c_j − 1) g_j||^2 <= sum_{j,l} |M_jl| G_j G_l / k^2`` under
    ``||∇f_j|| <= G_j`` (``g_j = ∇f_j/k``; Cauchy–Schwarz on ``<g_j, g_l>``). 0 for exact
    decoding (``M = 0``).

    Raises:
        ValueError: ``coefficient_second`` not square, negative or mis-shaped bounds.
    """
    M = _square("coefficient_second", coefficient_second)
    k = M.shape[0]
    G = np.broadcast_to(_partition_vector("partition_grad_bound", partition_grad_bound, k), (k,))
    return float(G @ np.abs(M) @ G) / (k * k)


def straggler_variance_at(coefficient_second: Any, partition_grads: Any) -> float:
    """``sigma_s^2(x) = sum_{j,l} M_jl <g_j, g_l>`` exactly, at the partition gradients
    ``g_j = ∇f_j(x)/k`` given as a ``(k, d)`` array.

    Raises:
        ValueError: mismatched shapes.
    """
    M = _square("coefficient_second", coefficient_second)
    g = check_array("partition_grads", partition_grads, ndim=2)
    if g.shape[0] != M.shape[0]:
        raise ValueError(
            f"partition_grads must have {M.shape[0]} rows (one per partition), got {g.shape}"
        )
    return float(np.sum(M * (g @ g.T)))


def partition_noise_variance(weight_sq: Any, B: Any, partition_sigma_sq: Any) -> float:
    """``sum_i E[a_i^2] sum_j B_ij^2 sigma_j^2 / k^2``: the partitions' own stochastic-gradient
    noise (independent per worker and partition, as :func:`ratedist.sim.coded` draws it)
    after decoding.

    Raises:
        ValueError: mis-shaped or negative inputs.
    """
    B = check_array("B", B, ndim=2)
    w = _nonnegative_array("weight_sq", weight_sq)
    if w.shape != (B.shape[0],):
        raise ValueError(f"weight_sq must have shape ({B.shape[0]},), got {w.shape}")
    k = B.shape[1]
    s2 = np.broadcast_to(_partition_vector("partition_sigma_sq", partition_sigma_sq, k), (k,))
    return float(w @ (B * B) @ s2) / (k * k)


class VarianceTerms(NamedTuple):
    """The variance of the decoded 1-bit gradient, term by term (see the module docstring).

    Attributes:
        quantization: ``sigma_q^2``.
        straggler: ``sigma_s^2``.
        stochastic: the partitions' own gradient noise after decoding.
    """

    quantization: float
    straggler: float
    stochastic: float

    @property
    def total(self) -> float:
        """``sigma^2 = sigma_q^2 + sigma_s^2 + stochastic``."""
        return self.quantization + self.straggler + self.stochastic


def coded_variance(
    moments: DecodingMoments,
    B: Any,
    *,
    dim: Any,
    scale: str,
    partition_grad_bound: Any,
    R: Any = None,
    partition_sigma_sq: Any = 0.0,
    bias_tol: Any = 1e-8,
) -> VarianceTerms:
    """A priori ``sigma^2 >= E||g − ∇f||^2`` at every ``x`` for the unbiased 1-bit design.

    * quantization: ``sum_i E[a_i^2] mse_i`` with ``mse_i = d R^2`` (known bound) or
      ``(d − 1) E||ŷ_i||^2 <= (d − 1) ((sum_j |B_ij| G_j/k)^2 + sum_j B_ij^2 sigma_j^2/k^2)``
      (sent ``l2``/``linf`` norm; ``ŷ_i`` the message with the partitions' noise);
    * stragglers: :func:`straggler_variance_bound`;
    * the partitions' noise: :func:`partition_noise_variance`.

    Assumptions: ``E c(mask) = 1`` (checked on exact moments: ``moments.bias <= bias_tol``;
    a Monte Carlo estimate of the moments cannot show it, the caller must know it);
    ``||∇f_j(x)|| <= G_j`` for every ``x``; with ``scale="bound"``, every message satisfies
    ``||ŷ_i||_inf <= R`` (else the clipped quantizer is biased).

    Args:
        moments: the code's :class:`DecodingMoments` under the straggler law.
        B: ``(n, k)`` encoding matrix.
        dim: ``d``.
        scale: the stochastic sign's scale (``"bound"``, ``"l2"``, ``"linf"``).
        partition_grad_bound: ``G`` (scalar) or ``G_j`` per partition.
        R: the known bound for ``scale="bound"``.
        partition_sigma_sq: per-partition stochastic-gradient variance ``sigma_j^2`` of
            ``∇f_j`` (0 for exact partition gradients).
        bias_tol: largest ``max_j |E c_j − 1|`` of exact moments taken as unbiased (rounding of
            the decoding solves: ~1e-13 for the cyclic code at n = 8).

    Raises:
        ValueError: mismatched shapes, bad scale or constants, exact moments of a biased
            decoder.
    """
    B = check_array("B", B, ndim=2)
    tol = check_nonnegative("bias_tol", bias_tol)
    if moments.exact and moments.bias > tol:
        raise ValueError(
            f"moments must be those of an unbiased decoder (max |E c - 1| <= bias_tol = "
            f"{tol:g}), got max |E c - 1| = {moments.bias:.3g} ({moments.law})"
        )
    if moments.weight_sq.shape != (B.shape[0],) or moments.coefficient_second.shape != (
        B.shape[1],
        B.shape[1],
    ):
        raise ValueError(
            f"moments must belong to a code with B of shape {B.shape}, got weight_sq "
            f"{moments.weight_sq.shape} and coefficient_second {moments.coefficient_second.shape}"
        )
    k = B.shape[1]
    noise = np.broadcast_to(_partition_vector("partition_sigma_sq", partition_sigma_sq, k), (k,))
    noise_sq = (B * B) @ noise / (k * k)
    if check_choice("scale", scale, SCALES) == "bound":
        mse = onebit_message_mse(dim, scale, R=R)
    else:
        y_sq = message_norm_bounds(B, partition_grad_bound) ** 2 + noise_sq
        mse = onebit_message_mse(dim, scale, norm_sq=y_sq)
    return VarianceTerms(
        quantization=quantization_variance(moments.weight_sq, mse),
        straggler=straggler_variance_bound(moments.coefficient_second, partition_grad_bound),
        stochastic=float(moments.weight_sq @ noise_sq),
    )


# ----------------------------------------------------------------------- convergence bounds
def _step_limit(L: float) -> float:
    return 1.0 / L


def coded_convex_bound(
    *, dist0_sq: Any, L: Any, sigma_sq: Any, gamma: Any = None
) -> SublinearBound:
    """Convex L-smooth ``f``, unbiased ``g^t`` with variance ``<= sigma^2``, constant
    ``0 < gamma <= 1/L``::

        (1/T) sum_{t=1}^{T} E f(x^t) − f* <= ||x^0 − x*||^2/(2 gamma T) + gamma (1 + L gamma) sigma^2/2

    (``<= ||x^0 − x*||^2/(2 gamma T) + gamma sigma^2``). By Jensen it bounds
    ``E f(x̄_T) − f*`` for ``x̄_T = (1/T) sum_{t=1}^{T} x^t``, the average of the iterates
    after each of the ``T`` steps (not including ``x^0``), and ``min_{1<=t<=T} E f(x^t) − f*``.

    Derivation (:func:`ratedist.symbolic.gradient_coding.convex_step_residual`): L-smoothness
    ``E f(x^{t+1}) <= f(x^t) − gamma ||∇f||^2 + (L gamma^2/2)(||∇f||^2 + sigma^2)``, convexity
    ``f(x^t) − f* <= <∇f, x^t − x*>`` and ``E||x^{t+1} − x*||^2 = ||x^t − x*||^2 − 2 gamma
    <∇f, x^t − x*> + gamma^2 (||∇f||^2 + sigma^2)`` give ``E f(x^{t+1}) − f* <=
    (D_t − D_{t+1})/(2 gamma) + (gamma/2)(L gamma − 1)||∇f||^2 + gamma (1 + L gamma)
    sigma^2/2``; the gradient term is ``<= 0`` for ``gamma <= 1/L``; sum and telescope.

    Args:
        dist0_sq: ``||x^0 − x*||^2`` (``x*`` any minimiser).
        L: smoothness constant.
        sigma_sq: variance bound (e.g. :meth:`VarianceTerms.total`).
        gamma: step size; None takes ``1/L``.

    Returns:
        :class:`SublinearBound` with ``transient = dist0_sq/(2 gamma)``,
        ``floor = gamma (1 + L gamma) sigma^2/2`` and ``quantity`` saying what is bounded.

    Raises:
        ValueError: negative constants, ``L <= 0`` or ``gamma`` not in ``(0, 1/L]``.
    """
    dist0_sq = check_nonnegative("dist0_sq", dist0_sq)
    L = check_positive("L", L)
    sigma_sq = check_nonnegative("sigma_sq", sigma_sq)
    gamma = step_size_or_limit("gamma", gamma, _step_limit(L))
    return SublinearBound(
        transient=dist0_sq / (2.0 * gamma),
        floor=gamma * (1.0 + L * gamma) * sigma_sq / 2.0,
        step_size=gamma,
        theorem=(
            "SGD with an unbiased estimator of bounded variance, convex L-smooth f, average "
            "iterate (derived in ratedist.symbolic.gradient_coding; mirrors the convex "
            "guarantee of 1-bit GC-DL, arXiv 2403.14716)"
        ),
        assumptions=(
            f"{_SMOOTH} and convex with a minimiser x*",
            _UNBIASED,
            _VARIANCE,
            "constant step 0 < gamma <= 1/L",
        ),
        quantity=_CONVEX_QUANTITY,
    )


def coded_nonconvex_bound(
    *, delta0: Any, L: Any, sigma_sq: Any, gamma: Any = None
) -> SublinearBound:
    """Nonconvex L-smooth ``f >= f*``, unbiased ``g^t`` with variance ``<= sigma^2``,
    constant ``0 < gamma <= 1/L``::

        (1/T) sum_{t<T} E||∇f(x^t)||^2 <= 2 (f(x^0) − f*)/(gamma T) + L gamma sigma^2

    (``min_{t<T}`` and the average over a uniformly drawn ``t`` obey the same bound). It is
    :func:`ratedist.bounds.sgd_unbiased_bound` with one "worker" whose message variance is
    the decoded ``sigma^2``.

    Args:
        delta0: ``f(x^0) − f*`` (``f*`` a lower bound of ``f``).
        L: smoothness constant.
        sigma_sq: variance bound.
        gamma: step size; None takes ``1/L``.

    Returns:
        :class:`SublinearBound` (``transient = 2 delta0/gamma``, ``floor = L gamma sigma^2``).

    Raises:
        ValueError: negative constants, ``L <= 0`` or ``gamma`` not in ``(0, 1/L]``.

    References:
        Ghadimi & Lan, arXiv 1309.5549 (constant-step form); sympy:
        ``gc.nonconvex_bound``.
    """
    L = check_positive("L", L)
    sigma_sq = check_nonnegative("sigma_sq", sigma_sq)
    gamma = step_size_or_limit("gamma", gamma, _step_limit(L))
    out = sgd_unbiased_bound(delta0=delta0, L=L, n_workers=1, sigma_sq=sigma_sq, eta=gamma)
    return out._replace(
        theorem=(
            "SGD with an unbiased estimator of bounded variance, nonconvex L-smooth f, average "
            "squared gradient norm (Ghadimi & Lan, arXiv 1309.5549; mirrors the nonconvex "
            "guarantee of 1-bit GC-DL, arXiv 2403.14716)"
        ),
        assumptions=(
            f"{_SMOOTH} and bounded below by f*",
            _UNBIASED,
            _VARIANCE,
            "constant step 0 < gamma <= 1/L",
        ),
    )


def horizon_step_size(T: Any, *, L: Any, c: Any) -> Any:
    """``gamma = min(1/L, c/sqrt(T))``, the step for a known horizon ``T`` (vectorised).

    Raises:
        ValueError: ``T`` < 1, ``L`` or ``c`` <= 0.
    """
    steps = _check_steps(T)
    L = check_positive("L", L)
    c = check_positive("c", c)
    return _scalar_or_array(np.minimum(1.0 / L, c / np.sqrt(steps)))


def convex_horizon_constant(*, dist0_sq: Any, sigma_sq: Any) -> float:
    """``c* = sqrt(||x^0 − x*||^2 / (2 sigma^2))`` minimising ``D0/(2c) + c sigma^2``, the
    ``sqrt(T)``-scaled convex bound (with ``gamma (1 + L gamma)/2 <= gamma``) at
    ``gamma = c/sqrt(T)``: then ``bound <= sqrt(2 D0 sigma^2 / T)`` once ``c*/sqrt(T) <= 1/L``.

    Raises:
        ValueError: ``dist0_sq`` or ``sigma_sq`` not > 0.
    """
    return math.sqrt(
        check_positive("dist0_sq", dist0_sq) / (2 * check_positive("sigma_sq", sigma_sq))
    )


def nonconvex_horizon_constant(*, delta0: Any, L: Any, sigma_sq: Any) -> float:
    """``c* = sqrt(2 Delta0 / (L sigma^2))`` minimising ``2 Delta0/c + L c sigma^2``: then
    ``bound = 2 sqrt(2 Delta0 L sigma^2 / T)`` once ``c*/sqrt(T) <= 1/L``.

    Raises:
        ValueError: a constant not > 0.
    """
    delta0 = check_positive("delta0", delta0)
    L = check_positive("L", L)
    return math.sqrt(2 * delta0 / (L * check_positive("sigma_sq", sigma_sq)))


def convex_horizon_bound(T: Any, *, dist0_sq: Any, L: Any, sigma_sq: Any, c: Any) -> Any:
    """:func:`coded_convex_bound` at ``T`` with ``gamma = min(1/L, c/sqrt(T))`` (vectorised):
    ``(D0/(2c) + c sigma^2 (1 + L c/sqrt(T))/2)/sqrt(T)`` for ``T >= (c L)^2`` — slope −1/2."""
    gamma = np.asarray(horizon_step_size(T, L=L, c=c))
    steps = _check_steps(T)
    D0 = check_nonnegative("dist0_sq", dist0_sq)
    s2 = check_nonnegative("sigma_sq", sigma_sq)
    L = float(L)
    return _scalar_or_array(D0 / (2 * gamma * steps) + gamma * (1 + L * gamma) * s2 / 2)


def nonconvex_horizon_bound(T: Any, *, delta0: Any, L: Any, sigma_sq: Any, c: Any) -> Any:
    """:func:`coded_nonconvex_bound` at ``T`` with ``gamma = min(1/L, c/sqrt(T))``
    (vectorised): ``(2 Delta0/c + L c sigma^2)/sqrt(T)`` for ``T >= (c L)^2``."""
    gamma = np.asarray(horizon_step_size(T, L=L, c=c))
    steps = _check_steps(T)
    delta0 = check_nonnegative("delta0", delta0)
    s2 = check_nonnegative("sigma_sq", sigma_sq)
    return _scalar_or_array(2 * delta0 / (gamma * steps) + float(L) * gamma * s2)


def _check_diminishing(L: Any, sigma_sq: Any, gamma0: Any, offset: Any):
    """Checked ``(L, sigma_sq, gamma0, offset)``: every step ``gamma0/sqrt(t + offset)`` must
    be ``<= 1/L``, i.e. ``gamma0 <= sqrt(offset)/L`` (None takes that limit)."""
    L = check_positive("L", L)
    sigma_sq = check_nonnegative("sigma_sq", sigma_sq)
    offset = check_int("offset", offset, min_value=1)
    gamma0 = step_size_or_limit("gamma0", gamma0, math.sqrt(offset) / L)
    return L, sigma_sq, gamma0, offset


def coded_convex_diminishing_bound(
    *, dist0_sq: Any, L: Any, sigma_sq: Any, gamma0: Any = None, offset: Any = 1
) -> DiminishingStepBound:
    """Convex case with ``gamma_t = gamma0 / sqrt(t + offset)``, first step
    ``gamma_0 = gamma0/sqrt(offset) <= 1/L``::

        sum_{t<T} gamma_t (E f(x^{t+1}) − f*) / sum_{t<T} gamma_t
            <= (D0/2 + sigma^2 (1 + L gamma_0)/2 sum_t gamma_t^2) / sum_t gamma_t

    — ``O(log T / sqrt(T))`` (``sum gamma_t^2 = O(log T)``, ``sum gamma_t = Theta(sqrt(T))``);
    it bounds ``E f(x̃_T) − f*`` for the weighted average ``x̃_T = sum_t gamma_t x^{t+1} /
    sum_t gamma_t`` and ``min_t E f(x^{t+1}) − f*``. From the constant-step one-step bound
    times ``gamma_t`` (``(D_t − D_{t+1})/2`` telescopes) and ``gamma_t <= gamma_0``.

    Args:
        dist0_sq: ``||x^0 − x*||^2``.
        L: smoothness constant.
        sigma_sq: variance bound.
        gamma0: numerator of the schedule; None takes ``sqrt(offset)/L`` (first step ``1/L``).
        offset: ``gamma_t = gamma0/sqrt(t + offset)``, ``>= 1``.

    Raises:
        ValueError: bad constants, ``gamma0`` not in ``(0, sqrt(offset)/L]``, ``offset`` < 1.
    """
    dist0_sq = check_nonnegative("dist0_sq", dist0_sq)
    L, sigma_sq, gamma0, offset = _check_diminishing(L, sigma_sq, gamma0, offset)
    return DiminishingStepBound(
        a=dist0_sq / 2.0,
        b=sigma_sq * (1.0 + L * gamma0 / math.sqrt(offset)) / 2.0,
        step_size=gamma0,
        offset=offset,
        theorem="SGD, unbiased estimator of bounded variance, convex L-smooth f, steps "
        "gamma0/sqrt(t + offset), gamma_t-weighted average iterate (ratedist.symbolic."
        "gradient_coding)",
        assumptions=(
            f"{_SMOOTH} and convex with a minimiser x*",
            _UNBIASED,
            _VARIANCE,
            "gamma_t = gamma0/sqrt(t + offset), 0 < gamma0 <= sqrt(offset)/L",
        ),
        quantity="sum_{t<T} gamma_t (E f(x^{t+1}) − f*) / sum_{t<T} gamma_t",
    )


def coded_nonconvex_diminishing_bound(
    *, delta0: Any, L: Any, sigma_sq: Any, gamma0: Any = None, offset: Any = 1
) -> DiminishingStepBound:
    """Nonconvex case with ``gamma_t = gamma0 / sqrt(t + offset)``, first step
    ``gamma0/sqrt(offset) <= 1/L``::

        sum_{t<T} gamma_t E||∇f(x^t)||^2 / sum_{t<T} gamma_t
            <= (2 Delta0 + L sigma^2 sum_t gamma_t^2) / sum_t gamma_t

    — ``O(log T / sqrt(T))``; it bounds ``min_{t<T} E||∇f(x^t)||^2`` and the squared gradient
    at an iterate drawn with probability ``gamma_t / sum gamma``. From
    ``E f^{t+1} <= f^t − (gamma_t/2)||∇f^t||^2 + L gamma_t^2 sigma^2/2``, times 2, summed.

    Args:
        delta0: ``f(x^0) − f*``.
        L: smoothness constant.
        sigma_sq: variance bound.
        gamma0: numerator of the schedule; None takes ``sqrt(offset)/L`` (first step ``1/L``).
        offset: ``gamma_t = gamma0/sqrt(t + offset)``, ``>= 1``.

    Raises:
        ValueError: bad constants, ``gamma0`` not in ``(0, sqrt(offset)/L]``, ``offset`` < 1.
    """
    delta0 = check_nonnegative("delta0", delta0)
    L, sigma_sq, gamma0, offset = _check_diminishing(L, sigma_sq, gamma0, offset)
    return DiminishingStepBound(
        a=2.0 * delta0,
        b=L * sigma_sq,
        step_size=gamma0,
        offset=offset,
        theorem="SGD, unbiased estimator of bounded variance, nonconvex L-smooth f, steps "
        "gamma0/sqrt(t + offset), gamma_t-weighted average squared gradient norm "
        "(ratedist.symbolic.gradient_coding)",
        assumptions=(
            f"{_SMOOTH} and bounded below by f*",
            _UNBIASED,
            _VARIANCE,
            "gamma_t = gamma0/sqrt(t + offset), 0 < gamma0 <= sqrt(offset)/L",
        ),
    )


# ------------------------------------------------------------------- a complete first step
class FirstStep(NamedTuple):
    """Bounds after one step whose estimator has mean ``kappa ∇f(x^0)`` (not necessarily
    unbiased): ``delta1 >= E f(x^1) − f*`` and ``dist1_sq = E||x^1 − x*||^2`` (None when the
    distance inputs were not given)."""

    delta1: float
    dist1_sq: float | None


def first_step_bounds(
    *,
    delta0: Any,
    grad0_sq: Any,
    L: Any,
    gamma: Any,
    kappa: Any,
    sigma0_sq: Any,
    dist0_sq: Any = None,
    inner0: Any = None,
) -> FirstStep:
    """One step ``x^1 = x^0 − gamma g^0`` with ``E g^0 = kappa ∇f(x^0)`` and
    ``E||g^0 − kappa ∇f(x^0)||^2 = sigma0^2``:

    * ``E f(x^1) − f* <= delta0 − gamma kappa (1 − L gamma kappa/2) ||∇f(x^0)||^2 +
      L gamma^2 sigma0^2/2`` (L-smoothness);
    * ``E||x^1 − x*||^2 = dist0^2 − 2 gamma kappa <∇f(x^0), x^0 − x*> + gamma^2 (kappa^2
      ||∇f(x^0)||^2 + sigma0^2)`` (exact).

    The simulator's step 0 is complete (every worker answers, :mod:`ratedist.sim.stages`), so a
    decoder rescaled for stragglers (``a_i = 1/(d (1 − p))``) has ``kappa = 1/(1 − p)`` there:
    the bounds above are then applied from ``x^1`` on.

    Raises:
        ValueError: negative constants, ``L``/``gamma`` <= 0, only one of ``dist0_sq``/``inner0``.
    """
    delta0 = check_nonnegative("delta0", delta0)
    g0 = check_nonnegative("grad0_sq", grad0_sq)
    L = check_positive("L", L)
    gamma = check_positive("gamma", gamma)
    kappa = check_nonnegative("kappa", kappa)
    s0 = check_nonnegative("sigma0_sq", sigma0_sq)
    delta1 = delta0 - gamma * kappa * (1 - L * gamma * kappa / 2) * g0 + L * gamma**2 * s0 / 2
    if (dist0_sq is None) != (inner0 is None):
        raise ValueError("dist0_sq and inner0 must be given together (or neither)")
    dist1 = None
    if dist0_sq is not None:
        D0 = check_nonnegative("dist0_sq", dist0_sq)
        ip = check_real("inner0", inner0)
        dist1 = D0 - 2 * gamma * kappa * ip + gamma**2 * (kappa**2 * g0 + s0)
    return FirstStep(float(delta1), dist1)
