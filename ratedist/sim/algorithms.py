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

:func:`example_algorithm` builds any registered method from these facts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ratedist._registry import Registry
from ratedist._validation import check_in_interval, check_nonnegative
from ratedist.compressors.base import FLOAT_BITS, Compressor
from ratedist.compressors.feedback import ErrorFeedbackState
from ratedist.compressors.spec import make
from ratedist.sim.method import (
    Algorithm,
    add_msgs,
    alpha_of,
    as_dtype,
    bits_dtype,
    call_keys,
    check_compressor,
    compress,
    full_msg,
    info_msg,
    label,
    omega_of,
    payload_bits,
    scale_msg,
    select,
    split_shared,
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

    return Algorithm(
        f"ef21[{label(comp)}]",
        _comp_init(comp),
        step,
        lambda d, n, hp: theory("ef21", alpha=alpha_of(comp, d))[0],
        lambda d, n, hp: theory("ef21", alpha=alpha_of(comp, d))[1],
        config={"algorithm": "ef21", "compressor": label(comp)},
        needs=("h",),
        bits_per_step=lambda d, n, hp: payload_bits(comp, d),
        deterministic=comp.facts.deterministic,
    )


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


@register("tpc_v1", args={"compressor": "contractive"}, bound="tpc_v1", suite=True)
def tpc_v1(compressor: Compressor) -> Algorithm:
    """3PCv1: ``y + C(x − y)``; ``A = 1``, ``B = 1 − alpha``.

    Bits: only ``C``'s message is charged (the server is assumed to know ``y``, as in the
    theory of arXiv 2202.00998 §3.5; a real system would also need ``y``).
    """
    comp = check_compressor("compressor", compressor)

    def step(h, y, x, cstate, key, shared, hp):
        c, cstate, msg = compress(comp, x - y, cstate, key, shared)
        return y + c, cstate, msg

    return Algorithm(
        f"tpc_v1[{label(comp)}]",
        _comp_init(comp),
        step,
        lambda d, n, hp: theory("tpc_v1", alpha=alpha_of(comp, d))[0],
        lambda d, n, hp: theory("tpc_v1", alpha=alpha_of(comp, d))[1],
        config={"algorithm": "tpc_v1", "compressor": label(comp)},
        needs=("y",),
        bits_per_step=lambda d, n, hp: payload_bits(comp, d),
        deterministic=comp.facts.deterministic,
    )


@register(
    "tpc_v2", args={"compressor": "contractive", "unbiased": "unbiased"}, bound="tpc_v2", suite=True
)
def tpc_v2(compressor: Compressor, unbiased: Compressor) -> Algorithm:
    """3PCv2: ``b = h + Q(x − y)``, ``g = b + C(x − b)``; ``A = alpha``, ``B = (1 − alpha) omega``.

    Args:
        compressor: contractive ``C`` (alpha).
        unbiased: unbiased ``Q`` (omega).
    """
    comp = check_compressor("compressor", compressor)
    q = check_compressor("unbiased", unbiased)

    def init(grad0, key, shared, hp):
        return grad0, (comp.init(grad0), q.init(grad0)), full_msg(grad0)

    def step(h, y, x, mstate, key, shared, hp):
        cs, qs = mstate
        k1, k2 = jax.random.split(key)
        s1, s2 = split_shared(shared)
        qv, qs, m1 = compress(q, x - y, qs, k1, s1)
        b = h + qv
        c, cs, m2 = compress(comp, x - b, cs, k2, s2)
        return b + c, (cs, qs), add_msgs(m1, m2)

    def A(d, n, hp):
        return alpha_of(comp, d)

    def B(d, n, hp):
        return theory("tpc_v2", alpha=alpha_of(comp, d), omega=omega_of(q, d))[1]

    return Algorithm(
        f"tpc_v2[{label(comp)},{label(q)}]",
        init,
        step,
        A,
        B,
        config={"algorithm": "tpc_v2", "compressor": label(comp), "unbiased": label(q)},
        bits_per_step=lambda d, n, hp: payload_bits(comp, d) + payload_bits(q, d),
        deterministic=comp.facts.deterministic and q.facts.deterministic,
    )


@register(
    "tpc_v3", args={"compressor": "contractive", "inner": "algorithm"}, bound="tpc_v3", suite=False
)
def tpc_v3(compressor: Compressor, inner: Algorithm) -> Algorithm:
    """3PCv3: ``b = inner 3PC(h, y, x)``, ``g = b + C(x − b)``.

    ``A = 1 − (1 − alpha)(1 − A1)``, ``B = (1 − alpha) B1`` with ``(A1, B1)`` of ``inner``.
    ``inner`` must not use a shared coin or a trigger; its hyperparameters are this
    method's, prefixed ``"inner."``.

    Raises:
        TypeError: ``inner`` is not an Algorithm.  ValueError: inner is not a 3PC.
    """
    comp = check_compressor("compressor", compressor)
    if not isinstance(inner, Algorithm):
        raise TypeError(f"inner must be an Algorithm, got {type(inner).__name__}")
    if inner.A is None or inner.coin or inner.has_trigger:
        raise ValueError(f"inner must be a coin-free, trigger-free 3PC, got {inner.name!r}")

    def inner_hp(hp):
        return {"gamma": hp["gamma"], **{k: hp[f"inner.{k}"] for k in inner.hyper}}

    def init(grad0, key, shared, hp):
        g, ist, msg = inner.init(grad0, key, shared, inner_hp(hp))
        return g, (comp.init(grad0), ist), msg

    def step(h, y, x, mstate, key, shared, hp):
        cs, ist = mstate
        k1, k2 = jax.random.split(key)
        s1, s2 = split_shared(shared)
        b, ist, m1 = inner.step(h, y, x, ist, k1, s1, inner_hp(hp))
        c, cs, m2 = compress(comp, x - b, cs, k2, s2)
        return b + c, (cs, ist), add_msgs(m1, m2)

    def AB1(d, n, hp):
        ihp = {k: hp[f"inner.{k}"] for k in inner.hyper}
        return inner.A(d, n, ihp), inner.B(d, n, ihp)

    def A(d, n, hp):
        a, a1 = alpha_of(comp, d), AB1(d, n, hp)[0]
        return None if a is None or a1 is None else 1.0 - (1.0 - a) * (1.0 - a1)

    def B(d, n, hp):
        A1, B1 = AB1(d, n, hp)
        return theory("tpc_v3", alpha=alpha_of(comp, d), A1=A1, B1=B1)[1]

    return Algorithm(
        f"tpc_v3[{label(comp)},{inner.name}]",
        init,
        step,
        A,
        B,
        config={"algorithm": "tpc_v3", "compressor": label(comp), "inner": dict(inner.config)},
        hyper={f"inner.{k}": v for k, v in inner.hyper.items()},
        hyper_checks={f"inner.{k}": c for k, c in inner.hyper_checks.items()},
        bits_per_step=lambda d, n, hp: (
            payload_bits(comp, d)
            + inner.bits_per_step(d, n, {k: hp[f"inner.{k}"] for k in inner.hyper})
        ),
        deterministic=comp.facts.deterministic and inner.deterministic,
    )


@register(
    "tpc_v4",
    args={"compressor": "contractive", "compressor2": "contractive"},
    bound="tpc_v4",
    suite=False,
)
def tpc_v4(compressor: Compressor, compressor2: Compressor) -> Algorithm:
    """3PCv4: ``b = h + C2(x − h)``, ``g = b + C1(x − b)``.

    ``A = 1 − sqrt(1 − abar)``, ``B = (1 − abar)/(1 − sqrt(1 − abar))``,
    ``abar = 1 − (1 − alpha1)(1 − alpha2)``.
    """
    c1 = check_compressor("compressor", compressor)
    c2 = check_compressor("compressor2", compressor2)

    def init(grad0, key, shared, hp):
        return grad0, (c1.init(grad0), c2.init(grad0)), full_msg(grad0)

    def step(h, y, x, mstate, key, shared, hp):
        s1, s2 = mstate
        k1, k2 = jax.random.split(key)
        r1, r2 = split_shared(shared)
        v, s2, m2 = compress(c2, x - h, s2, k2, r2)
        b = h + v
        c, s1, m1 = compress(c1, x - b, s1, k1, r1)
        return b + c, (s1, s2), add_msgs(m1, m2)

    def AB(d):
        return theory("tpc_v4", alpha1=alpha_of(c1, d), alpha2=alpha_of(c2, d))

    return Algorithm(
        f"tpc_v4[{label(c1)},{label(c2)}]",
        init,
        step,
        lambda d, n, hp: AB(d)[0],
        lambda d, n, hp: AB(d)[1],
        config={"algorithm": "tpc_v4", "compressor": label(c1), "compressor2": label(c2)},
        needs=("h",),
        bits_per_step=lambda d, n, hp: payload_bits(c1, d) + payload_bits(c2, d),
        deterministic=c1.facts.deterministic and c2.facts.deterministic,
    )


def _coin_method(comp: Compressor):
    """``x`` (full send) if the shared coin is 1, else ``h + C(x − y)``."""

    def step(h, y, x, cstate, key, shared, hp):
        c, new_cs, msg = compress(comp, x - y, cstate, key, shared)
        g = jnp.where(shared.coin, x, h + c)
        cs = select(shared.coin, cstate, new_cs)
        full = full_msg(x)
        return g, cs, select(shared.coin, full, msg)

    return step


@register(
    "tpc_v5", args={"compressor": "contractive", "p": "hyper"}, bound="tpc_v5", suite=True, p=0.1
)
def tpc_v5(compressor: Compressor, p: float) -> Algorithm:
    """3PCv5: w.p. ``p`` (coin shared by all workers) send ``x``, else ``h + C(x − y)``.

    ``A = 1 − sqrt(1 − p)``, ``B = (1 − p)(1 − alpha)/(1 − sqrt(1 − p))``.

    Raises:
        ValueError: ``p`` not in (0, 1].
    """
    comp = check_compressor("compressor", compressor)
    p = _check_p(p)

    return Algorithm(
        f"tpc_v5[{label(comp)},p={p:g}]",
        _comp_init(comp),
        _coin_method(comp),
        lambda d, n, hp: 1.0 - math.sqrt(1.0 - hp["p"]),
        lambda d, n, hp: theory("tpc_v5", alpha=alpha_of(comp, d), p=hp["p"])[1],
        coin=True,
        config={"algorithm": "tpc_v5", "compressor": label(comp), "p": p},
        hyper={"p": p},
        hyper_checks={"p": _check_p},
        bits_per_step=lambda d, n, hp: (
            hp["p"] * d * FLOAT_BITS + (1 - hp["p"]) * payload_bits(comp, d)
        ),
        deterministic=False,
    )


@register(
    "marina", args={"compressor": "unbiased", "p": "hyper"}, bound="marina", suite=True, p=0.1
)
def marina(compressor: Compressor, p: float) -> Algorithm:
    """MARINA (arXiv 2102.07845): w.p. ``p`` (shared coin) send ``x``, else ``h + Q(x − y)``.

    Not a 3PC; its Lyapunov function uses the server error ``||g^t − grad f(x^t)||^2`` with
    ``A = p``, ``B = (1 − p) omega / n`` (Thm 2.1), ``omega`` of the unbiased ``Q``. The
    ``1/n`` assumes the workers' compressors are independent; for a compressor with shared
    randomness (PermK, ``facts.shared``) ``B`` is None (its "AB" theory, arXiv 2110.03300,
    is not implemented), so ``gamma`` must be given.

    Raises:
        ValueError: ``p`` not in (0, 1].
    """
    comp = check_compressor("compressor", compressor)
    p = _check_p(p)

    def B(d, n, hp):
        omega = None if comp.facts.shared else omega_of(comp, d)
        return theory("marina", p=hp["p"], omega=omega, n_workers=n)[1]

    return Algorithm(
        f"marina[{label(comp)},p={p:g}]",
        _comp_init(comp),
        _coin_method(comp),
        lambda d, n, hp: hp["p"],
        B,
        coin=True,
        lyapunov="server",
        config={"algorithm": "marina", "compressor": label(comp), "p": p},
        hyper={"p": p},
        hyper_checks={"p": _check_p},
        bits_per_step=lambda d, n, hp: (
            hp["p"] * d * FLOAT_BITS + (1 - hp["p"]) * payload_bits(comp, d)
        ),
        deterministic=False,
    )
