"""Distributed first-order methods as per-worker mechanisms (3PC framework, arXiv 2202.00998).

Every method is written for ONE worker (:mod:`ratedist.sim.method`) and is one stage of the
simulator round (:mod:`ratedist.sim.round`): the server aggregates the ``g_i`` and steps with
its optimizer (``optax.sgd(gamma)`` by default: ``x^{t+1} = x^t − gamma mean_i g_i^t``).

The registry :data:`ALGORITHMS` is the one place that describes a method for its consumers
(configs, the CLI, ``validate``, ``analysis/``, ``paper_figures/``, the generic tests):

* ``args``: each constructor parameter's kind — ``"contractive"`` (a compressor with
  ``alpha``), ``"unbiased"`` (a compressor with ``omega``), ``"algorithm"`` (an inner 3PC) or
  ``"hyper"`` (a scalar hyperparameter, an input of the compiled program);
* ``bound``: the name of its ``(A, B)`` in :data:`ratedist.bounds.THREE_PC` (None: not a 3PC
  and not MARINA);
* ``example``: values of its hyperparameters in the standard suite (``zeta = 4``, ``p = 0.1``);
* ``suite``: whether the validation suite, the bounds table and the convergence figure
  include it.

:func:`example_algorithm` builds any registered method from these facts. This module holds
the SGD family (GD, compressed SGD, EF14, local Adam) and EF21, LAG and CLAG; the 3PC variants
v1–v5 and MARINA are in :mod:`ratedist.sim.tpc`, enrolled in the same registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

from ratedist._registry import Registry
from ratedist._validation import check_in_interval, check_nonnegative
from ratedist.compressors.base import FLOAT_BITS, Compressor
from ratedist.compressors.feedback import ErrorFeedbackState
from ratedist.compressors.spec import make
from ratedist.sim.method import (
    Algorithm,
    alpha_of,
    as_dtype,
    bits_dtype,
    call_keys,
    check_compressor,
    compress,
    full_msg,
    info_msg,
    label,
    payload_bits,
    scale_msg,
    select,
    theory,
)

#: Registry of algorithm constructors; facts ``args`` (parameter -> kind), ``bound``,
#: ``example`` and ``suite`` (see the module docstring).
ALGORITHMS: Registry[Callable[..., Algorithm]] = Registry("algorithm")

#: argument kinds a constructor parameter may have
ARG_KINDS = ("contractive", "unbiased", "algorithm", "hyper")


def register(name: str, *, args: Mapping[str, str], bound: str | None, suite: bool, **example):
    """Enrol a constructor in :data:`ALGORITHMS` (``example``: suite values of its hypers)."""
    bad = {k: v for k, v in args.items() if v not in ARG_KINDS}
    if bad:
        raise ValueError(f"args kinds must be in {ARG_KINDS}, got {bad}")
    return ALGORITHMS.register(name, args=dict(args), bound=bound, suite=suite, example=example)


def example_algorithm(name: str, *, k: int, zeta: float | None = None, p: float | None = None):
    """The standard instance of a registered method: Top-K(k) for contractive compressors,
    unbiased Rand-K(k) for unbiased ones, EF21 with Top-K(k) as an inner 3PC, and the
    registry's example hyperparameters (``zeta``/``p`` override them when given)."""
    facts = ALGORITHMS.facts(name)
    given = {"zeta": zeta, "p": p}
    kinds = {
        "contractive": lambda _: make(f"top-k:k={k}"),
        "unbiased": lambda _: make(f"rand-k-unbiased:k={k}"),
        "algorithm": lambda _: ef21(make(f"top-k:k={k}")),
        "hyper": lambda arg: (
            given.get(arg) if given.get(arg) is not None else facts["example"][arg]
        ),
    }
    kwargs = {arg: kinds[kind](arg) for arg, kind in facts["args"].items()}
    return ALGORITHMS.get(name)(**kwargs)


def _check_zeta(zeta: Any) -> float:
    return check_nonnegative("zeta", zeta)


def _check_p(p: Any) -> float:
    return check_in_interval("p", p, 0.0, 1.0, closed=(False, True))


def _full_init(grad0, key, shared, hp):
    return grad0, (), full_msg(grad0)


def _comp_init(comp):
    """Mechanism state = compressor state, initial estimator = the full local gradient."""

    def init(grad0, key, shared, hp):
        return grad0, comp.init(grad0), full_msg(grad0)

    return init


def contractive_method(name: str, comp: Compressor, step, *, needs: tuple[str, ...]) -> Algorithm:
    """The :class:`Algorithm` of a 3PC method with one contractive compressor ``comp`` and the
    per-worker ``step``: ``(A, B)`` of ``theory(name, alpha)`` (``alpha`` from ``comp``'s
    facts), the compressor's state as the mechanism state, its payload as the bits per step."""
    return Algorithm(
        f"{name}[{label(comp)}]",
        _comp_init(comp),
        step,
        lambda d, n, hp: theory(name, alpha=alpha_of(comp, d))[0],
        lambda d, n, hp: theory(name, alpha=alpha_of(comp, d))[1],
        config={"algorithm": name, "compressor": label(comp)},
        needs=needs,
        bits_per_step=lambda d, n, hp: payload_bits(comp, d),
        deterministic=comp.facts.deterministic,
    )


# --------------------------------------------------------------------------- algorithms


@register("gd", args={}, bound="gd", suite=True)
def gd() -> Algorithm:
    """Distributed gradient descent: every worker sends its full gradient (A = 1, B = 0)."""

    def step(h, y, x, mstate, key, shared, hp):
        return x, mstate, full_msg(x)

    return Algorithm(
        "gd",
        _full_init,
        step,
        lambda d, n, hp: 1.0,
        lambda d, n, hp: 0.0,
        config={"algorithm": "gd"},
        needs=(),
        bits_per_step=lambda d, n, hp: d * FLOAT_BITS,
    )


def _ratio(num, den):
    """``num / den``, 0 where ``den`` is 0 (nothing was compressed)."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0)


def _residual_diagnostics(e, sent):
    """EF residual ``e = v − C(v)`` and the sent ``C(v)``: ``||e||^2`` and ``||e||^2/||v||^2``."""
    e2 = jnp.sum(e**2)
    return {"ef_norm_sq": e2, "quant_rel_error": _ratio(e2, jnp.sum((sent + e) ** 2))}


def _compressed_sgd_diagnostics(x, g, cstate, hp):
    if isinstance(cstate, ErrorFeedbackState):
        return _residual_diagnostics(cstate.error, g)
    return {"quant_rel_error": _ratio(jnp.sum((g - x) ** 2), jnp.sum(x**2))}


@register("compressed_sgd", args={"compressor": "unbiased"}, bound=None, suite=False)
def compressed_sgd(compressor: Compressor) -> Algorithm:
    """Compressed (S)GD: ``g_i^{t+1} = C(grad_i(x^{t+1}))``; not a 3PC (``A = B = None``).

    With ``error_feedback(inner)`` as the compressor this is EF-SGD with the residual kept on
    the gradient scale. ``g_i^0 = C(grad_i(x^0))``.
    """
    comp = check_compressor("compressor", compressor)

    def init(grad0, key, shared, hp):
        cstate = comp.init(grad0)
        g, cstate, msg = compress(comp, grad0, cstate, key, shared)
        return g, cstate, msg

    def step(h, y, x, cstate, key, shared, hp):
        return compress(comp, x, cstate, key, shared)

    return Algorithm(
        f"compressed_sgd[{label(comp)}]",
        init,
        step,
        None,
        None,
        config={"algorithm": "compressed_sgd", "compressor": label(comp)},
        needs=(),
        bits_per_step=lambda d, n, hp: payload_bits(comp, d),
        deterministic=comp.facts.deterministic,
        diagnostics=_compressed_sgd_diagnostics,
    )


@register("ef14", args={"compressor": "contractive"}, bound=None, suite=False)
def ef14(compressor: Compressor) -> Algorithm:
    """Classic error feedback (Seide et al. 2014; Stich et al. 2018, arXiv 1809.07599).

    ``v = e_i + gamma grad_i(x^{t+1})``, send ``m_i = C(v)``, keep ``e_i = v − m_i``; the
    server steps ``x − mean_i m_i``, written here as ``g_i = m_i (1/gamma)`` (the reciprocal
    once, as XLA computes a division by a compile-time constant; so with a server
    optimizer other than ``optax.sgd(gamma)``, ``gamma`` is only the residual's scale).
    Not a 3PC. ``e_i^0 = 0`` and ``g_i^0 = C(gamma grad_i(x^0))/gamma``.
    """
    comp = check_compressor("compressor", compressor)

    def init(grad0, key, shared, hp):
        gamma = as_dtype(hp["gamma"], grad0)
        cstate = comp.init(grad0)
        m, cstate, msg = compress(comp, gamma * grad0, cstate, key, shared)
        return m * (1 / gamma), (gamma * grad0 - m, cstate), msg

    def step(h, y, x, mstate, key, shared, hp):
        gamma = as_dtype(hp["gamma"], x)
        e, cstate = mstate
        v = e + gamma * x
        m, cstate, msg = compress(comp, v, cstate, key, shared)
        return m * (1 / gamma), (v - m, cstate), msg

    return Algorithm(
        f"ef14[{label(comp)}]",
        init,
        step,
        None,
        None,
        config={"algorithm": "ef14", "compressor": label(comp)},
        needs=(),
        bits_per_step=lambda d, n, hp: payload_bits(comp, d),
        deterministic=comp.facts.deterministic,
        diagnostics=_ef14_diagnostics,
    )


def _ef14_diagnostics(x, g, mstate, hp):
    """On the gradient scale: the residual ``e/gamma`` and the sent ``C(v)/gamma = g``."""
    gamma = as_dtype(hp["gamma"], g)
    return _residual_diagnostics(mstate[0] * (1 / gamma), g)


class AdamMoments(NamedTuple):
    """A worker's Adam state (optax's ``scale_by_adam``/``scale_by_amsgrad`` conventions)."""

    count: Any
    mu: Any
    nu: Any
    nu_max: Any  # AMSGrad's running max of the bias-corrected nu (zeros otherwise)


def adam_direction(moments: AdamMoments, grad, b1, b2, eps, amsgrad: bool):
    """One Adam update of the moments with ``grad`` and the direction
    ``mu_hat / (sqrt(nu_hat) + eps)`` (AMSGrad: ``nu_hat`` -> its running max), computed as
    ``optax.scale_by_adam``/``scale_by_amsgrad`` do (``eps_root = 0``).

    Returns:
        ``(direction, new moments, nu_hat used)``.
    """
    b1, b2, eps = (as_dtype(v, grad) for v in (b1, b2, eps))
    count = moments.count + 1
    mu = (1 - b1) * grad + b1 * moments.mu
    nu = (1 - b2) * grad**2 + b2 * moments.nu
    c = count.astype(grad.dtype)
    mu_hat = mu / (1 - b1**c)
    nu_hat = nu / (1 - b2**c)
    nu_max = jnp.maximum(moments.nu_max, nu_hat) if amsgrad else moments.nu_max
    used = nu_max if amsgrad else nu_hat
    return mu_hat / (jnp.sqrt(used) + eps), AdamMoments(count, mu, nu, nu_max), used


@register("local_adam", args={"compressor": "contractive"}, bound=None, suite=False)
def local_adam(
    compressor: Compressor,
    error_feedback: bool = True,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> Algorithm:
    """Adam on every worker, compressed Adam directions with error feedback (mode (b) of
    quantized distributed Adam, SPEC §5; arXiv 2004.14180 quantizes Adam's update).

    Worker ``i`` updates its own moments with its gradient, forms the direction
    ``u_i = mu_hat/(sqrt(nu_hat) + eps)`` (:func:`adam_direction`) and sends
    ``g_i = C(u_i + e_i)``, keeping ``e_i <- u_i + e_i − g_i`` when ``error_feedback``; the
    default server ``optax.sgd(gamma)`` then steps ``x <- x − gamma mean_i g_i``, so ``gamma``
    is the Adam learning rate and the residual lives on the direction's scale (equivalent to
    quantizing ``gamma u_i`` for a constant ``gamma``). With one worker and the identity this
    is single-machine Adam. The moments see the gradient at the point the worker holds (the
    quantized weights under weight quantization). Not a 3PC.

    Diagnostics: the residual and relative compression error, and the effective step sizes
    ``gamma/(sqrt(nu_hat_j) + eps)`` (their min and max).

    Raises:
        TypeError: ``compressor`` not a Compressor; ``error_feedback``/``amsgrad`` not bools.
        ValueError: ``b1``/``b2`` not in [0, 1), ``eps`` < 0.
    """
    comp = check_compressor("compressor", compressor)
    for name, v in (("error_feedback", error_feedback), ("amsgrad", amsgrad)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be a bool, got {v!r}")
    b1 = check_in_interval("b1", b1, 0.0, 1.0, closed=(True, False))
    b2 = check_in_interval("b2", b2, 0.0, 1.0, closed=(True, False))
    eps = check_nonnegative("eps", eps)
    ef = error_feedback

    def send(grad, moments, e, cstate, key, shared):
        u, moments, nu_hat = adam_direction(moments, grad, b1, b2, eps, amsgrad)
        v = u + e if ef else u
        q, cstate, msg = compress(comp, v, cstate, key, shared)
        e = v - q if ef else e
        return q, (moments, e, cstate, nu_hat), msg

    def init(grad0, key, shared, hp):
        z = jnp.zeros_like(grad0)
        moments = AdamMoments(jnp.zeros((), jnp.int32), z, z, z)
        return send(grad0, moments, z, comp.init(grad0), key, shared)

    def step(h, y, x, mstate, key, shared, hp):
        moments, e, cstate, _ = mstate
        return send(x, moments, e, cstate, key, shared)

    def diagnostics(x, g, mstate, hp):
        _, e, _, nu_hat = mstate
        eff = as_dtype(hp["gamma"], g) / (jnp.sqrt(nu_hat) + as_dtype(eps, g))
        out = {"step_min": jnp.min(eff), "step_max": jnp.max(eff)}
        if ef:
            out.update(_residual_diagnostics(e, g))
        return out

    tag = ("" if ef else ",no-ef") + (",amsgrad" if amsgrad else "")
    return Algorithm(
        f"local_adam[{label(comp)}{tag}]",
        init,
        step,
        None,
        None,
        config={
            "algorithm": "local_adam",
            "compressor": label(comp),
            "error_feedback": ef,
            "b1": b1,
            "b2": b2,
            "eps": eps,
            "amsgrad": amsgrad,
        },
        needs=(),
        bits_per_step=lambda d, n, hp: payload_bits(comp, d),
        deterministic=comp.facts.deterministic,
        diagnostics=diagnostics,
    )


@register("ef21", args={"compressor": "contractive"}, bound="ef21", suite=True)
def ef21(compressor: Compressor) -> Algorithm:
    """EF21 (arXiv 2106.05203): ``g_i^{t+1} = h + C(x − h)``.

    ``A = 1 − sqrt(1 − alpha)``, ``B = (1 − alpha)/(1 − sqrt(1 − alpha))`` (arXiv 2202.00998,
    Lemma 3.3), ``alpha`` from the compressor's facts. A sparsifier's ``sparse`` form is
    used when it has one: ``h`` is then updated at the K sent entries only (the same numbers
    as ``h + C(x − h)``, except that an untouched ``h_i = -0.0`` stays ``-0.0``).
    """
    comp = check_compressor("compressor", compressor)

    def step(h, y, x, cstate, key, shared, hp):
        if comp.sparse is not None:
            vals, idx, cstate, info = comp.sparse(x - h, cstate, **call_keys(comp, key, shared))
            return h.at[idx].add(vals, unique_indices=True), cstate, info_msg(info)
        c, cstate, msg = compress(comp, x - h, cstate, key, shared)
        return h + c, cstate, msg

    return contractive_method("ef21", comp, step, needs=("h",))


def _trigger(h, y, x, zeta):
    """LAG/CLAG rule: communicate iff ``||x − h||^2 > zeta ||x − y||^2``."""
    return jnp.sum((x - h) ** 2) > as_dtype(zeta, x) * jnp.sum((x - y) ** 2)


def _flag_msg(fired, msg):
    t = fired.astype(bits_dtype())
    out = scale_msg(msg, t)
    return out._replace(flag_bits=out.flag_bits + 1)


@register("lag", args={"zeta": "hyper"}, bound="lag", suite=True, zeta=4.0)
def lag(zeta: float) -> Algorithm:
    """Lazily aggregated gradient (LAG; arXiv 1805.09965 in the 3PC form of arXiv 2202.00998).

    Send the full gradient iff ``||x − h||^2 > zeta ||x − y||^2``, else reuse ``h``;
    ``A = 1``, ``B = zeta``. One flag bit per worker and step is charged for the decision.
    ``zeta`` is a hyperparameter (an input of the compiled program).

    Raises:
        ValueError: ``zeta`` < 0.
    """
    z = _check_zeta(zeta)

    def step(h, y, x, mstate, key, shared, hp):
        fired = _trigger(h, y, x, hp["zeta"])
        return jnp.where(fired, x, h), mstate, _flag_msg(fired, full_msg(x))

    return Algorithm(
        f"lag[zeta={z:g}]",
        _full_init,
        step,
        lambda d, n, hp: 1.0,
        lambda d, n, hp: hp["zeta"],
        has_trigger=True,
        config={"algorithm": "lag", "zeta": z},
        hyper={"zeta": z},
        hyper_checks={"zeta": _check_zeta},
        bits_per_step=lambda d, n, hp: d * FLOAT_BITS + 1.0,
    )


@register(
    "clag", args={"compressor": "contractive", "zeta": "hyper"}, bound="clag", suite=True, zeta=4.0
)
def clag(compressor: Compressor, zeta: float) -> Algorithm:
    """Compressed LAG (arXiv 2202.00998, §3.4): ``h + C(x − h)`` if triggered, else ``h``.

    ``A = 1 − sqrt(1 − alpha)``, ``B = max{(1 − alpha)/(1 − sqrt(1 − alpha)), zeta}``.
    The compressor state is advanced only on triggered steps.

    Raises:
        ValueError: ``zeta`` < 0.  TypeError: not a compressor.
    """
    comp = check_compressor("compressor", compressor)
    z = _check_zeta(zeta)

    def step(h, y, x, cstate, key, shared, hp):
        fired = _trigger(h, y, x, hp["zeta"])
        c, new_cstate, msg = compress(comp, x - h, cstate, key, shared)
        g = jnp.where(fired, h + c, h)
        return g, select(fired, new_cstate, cstate), _flag_msg(fired, msg)

    return Algorithm(
        f"clag[{label(comp)},zeta={z:g}]",
        _comp_init(comp),
        step,
        lambda d, n, hp: theory("clag", alpha=alpha_of(comp, d), zeta=hp["zeta"])[0],
        lambda d, n, hp: theory("clag", alpha=alpha_of(comp, d), zeta=hp["zeta"])[1],
        has_trigger=True,
        config={"algorithm": "clag", "compressor": label(comp), "zeta": z},
        hyper={"zeta": z},
        hyper_checks={"zeta": _check_zeta},
        bits_per_step=lambda d, n, hp: payload_bits(comp, d) + 1.0,
        deterministic=comp.facts.deterministic,
    )
