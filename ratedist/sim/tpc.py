"""The 3PC variants v1–v5 and MARINA (arXiv 2202.00998, Sec. 4–5; MARINA: arXiv 2102.07845)
as per-worker mechanisms of the simulator round.

Each constructor is enrolled in :data:`ratedist.sim.algorithms.ALGORITHMS` (its ``args``,
``bound``, ``example`` and ``suite`` facts are described there) and returns an
:class:`~ratedist.sim.method.Algorithm`: ``init``/``step`` of one worker, the method's
``(A, B)`` of the 3PC inequality (Definition 3.1), its configuration and its bits per step.
EF21, LAG and CLAG, the other 3PC methods, are in :mod:`ratedist.sim.algorithms`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ratedist.compressors.base import FLOAT_BITS, Compressor
from ratedist.sim.algorithms import _check_p, _comp_init, contractive_method, register
from ratedist.sim.method import (
    Algorithm,
    add_msgs,
    alpha_of,
    check_compressor,
    compress,
    full_msg,
    label,
    omega_of,
    payload_bits,
    select,
    split_shared,
    theory,
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

    return contractive_method("tpc_v1", comp, step, needs=("y",))


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
