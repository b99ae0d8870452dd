"""Distributed first-order methods as per-worker mechanisms (3PC framework, arXiv 2202.00998).

Every method here is written for ONE worker and follows the same outer loop (run by
:mod:`ratedist.sim.runner`):

    x^{t+1} = x^t − gamma g^t,        g^t = (1/n) sum_i g_i^t
    g_i^{t+1} = mechanism(h = g_i^t, y = grad_i(x^t), x = grad_i(x^{t+1}))

so an :class:`Algorithm` is a pair of pure per-worker functions

    init(grad0, key, shared, gamma) -> (g_i^0, mstate, Message)
    step(h, y, x, mstate, key, shared, gamma) -> (g_i^{t+1}, mstate, Message)

plus its theory: ``A`` and ``B`` (callables ``(dim, n_workers) -> float``, None when the
method is not a three point compressor), the probability ``coin_p`` of a coin shared by all
workers (3PCv5, MARINA) and whether it has a trigger (LAG, CLAG).

Randomness is explicit and of two kinds. ``key`` is the worker's own key,
``jax.random.fold_in(step_key, worker_index)``. ``shared`` (:class:`Shared`) is identical on
every worker: ``shared.coin``, one Bernoulli(``coin_p``) draw from the step key (3PCv5,
MARINA), and ``shared.key``, which compressors declaring ``facts.shared`` (PermK) receive
together with ``shared.worker``, the worker's index. All engines draw the same numbers.

Bits: a :class:`Message` carries what one worker sends in one step as raw counts: the
compressor's :class:`~ratedist.compressors.CompressInfo` fields (zeroed when a trigger
suppressed the send), ``flag_bits`` (1 per LAG/CLAG trigger decision) and ``full_bits``
(``d * FLOAT_BITS`` for an uncompressed vector: GD, LAG sends, MARINA/3PCv5 coin steps,
the initial ``g_i^0 = grad f_i(x^0)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ratedist._registry import Registry
from ratedist._validation import check_in_interval, check_nonnegative
from ratedist.bounds.three_pc import three_pc_constants
from ratedist.compressors.base import FLOAT_BITS, Compressor

#: Registry of algorithm constructors (used by configs and the CLI); fact ``args`` lists the
#: kinds of positional arguments ("compressor", "zeta", "p", "algorithm").
ALGORITHMS: Registry[Callable[..., Algorithm]] = Registry("algorithm")


class Message(NamedTuple):
    """Raw bit counts one worker sends in one step (JAX float scalars) and its trigger flag."""

    value_bits: Any
    index_bits: Any
    side_bits: Any
    entropy_bits: Any
    flag_bits: Any
    full_bits: Any
    triggered: Any


class Shared(NamedTuple):
    """Randomness and context common to all workers in one step.

    Attributes:
        coin: the shared Bernoulli(``coin_p``) draw (None when the method has no coin).
        key: a PRNG key equal on every worker (for ``facts.shared`` compressors, e.g. PermK).
        worker: this worker's index (uint32 scalar).
        n_workers: the number of workers (a Python int).
    """

    coin: Any
    key: Any
    worker: Any
    n_workers: int


class Algorithm(NamedTuple):
    """A distributed method as per-worker ``init``/``step`` functions plus its theory.

    Attributes:
        name: label, e.g. ``"ef21[top-k:k=10]"``.
        init: ``(grad0, key, shared, gamma) -> (g_i^0, mstate, Message)``.
        step: ``(h, y, x, mstate, key, shared, gamma) -> (g_i^{t+1}, mstate, Message)``.
        A: ``(dim, n_workers) -> A`` of the 3PC inequality (None: not a 3PC); returns None
            when a compressor does not declare the constant it needs.
        B: same for ``B``.
        coin_p: probability of the shared coin, or None.
        has_trigger: LAG/CLAG-style trigger (``Trace.trigger_rate`` is meaningful).
        lyapunov: ``"workers"`` (``Phi`` uses ``G^t``) or ``"server"`` (MARINA:
            ``||g^t − grad f(x^t)||^2``, arXiv 2102.07845 Thm 2.1).
        config: canonical JSON-able description.
        needs: which of ``h`` (the worker's estimator ``g_i^t``) and ``y`` (its previous
            gradient) ``step`` reads; the runner stores only those (plus what the 3PC check
            needs), which saves ``N x d`` memory traffic per step.
    """

    name: str
    init: Callable[..., tuple[Any, Any, Message]]
    step: Callable[..., tuple[Any, Any, Message]]
    A: Callable[[int, int], float | None] | None
    B: Callable[[int, int], float | None] | None
    coin_p: float | None = None
    has_trigger: bool = False
    lyapunov: str = "workers"
    config: Mapping[str, Any] = {}
    needs: tuple[str, ...] = ("h", "y")

    def constants(self, dim: int, n_workers: int) -> tuple[float | None, float | None]:
        """``(A, B)`` for a problem of size ``dim`` with ``n_workers`` (Nones where unknown)."""
        if self.A is None or self.B is None:
            return None, None
        return self.A(dim, n_workers), self.B(dim, n_workers)


# ------------------------------------------------------------------------------ helpers


def bits_dtype():
    """dtype of bit counts: the default JAX float (float64 under x64), whatever ``x`` is."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _full_msg(x) -> Message:
    """An uncompressed d-vector of FLOAT_BITS floats (the wire convention, whatever the dtype)."""
    dt = bits_dtype()
    z = jnp.zeros((), dt)
    full = jnp.asarray(x.shape[-1] * FLOAT_BITS, dt)
    return Message(z, z, z, z, z, full, jnp.ones((), dt))


def _info_msg(info) -> Message:
    dt = bits_dtype()
    c = lambda v: jnp.asarray(v, dt)  # noqa: E731
    z = jnp.zeros((), dt)
    return Message(
        c(info.value_bits),
        c(info.index_bits),
        c(info.side_bits),
        c(info.entropy_bits),
        z,
        z,
        jnp.ones((), dt),
    )


def _add(a: Message, b: Message) -> Message:
    return Message(
        *(u + v for u, v in zip(a[:6], b[:6], strict=True)),
        jnp.maximum(a.triggered, b.triggered),
    )


def _scale(m: Message, s) -> Message:
    """Bits multiplied by ``s`` (0/1 trigger); ``triggered`` set to ``s``."""
    return Message(*(v * s for v in m[:6]), s)


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def _call_keys(comp: Compressor, key, shared: Shared) -> dict[str, Any]:
    """The randomness a compressor gets: its worker's key, or the shared key, the worker's
    index and the number of workers (which a shared compressor checks against its own)."""
    if not comp.facts.shared:
        return {"key": key}
    return {"key": shared.key, "worker": shared.worker, "n_workers": shared.n_workers}


def _split_shared(shared: Shared) -> tuple[Shared, Shared]:
    """Two independent shared streams (one per compressor of a two-compressor method)."""
    k1, k2 = jax.random.split(shared.key)
    return shared._replace(key=k1), shared._replace(key=k2)


def _compress(comp: Compressor, v, cstate, key, shared: Shared):
    v_hat, cstate, info = comp.update(v, cstate, **_call_keys(comp, key, shared))
    return v_hat, cstate, _info_msg(info)


def _check_compressor(name: str, comp: Any) -> Compressor:
    if not isinstance(comp, Compressor):
        raise TypeError(
            f"{name} must be a ratedist.compressors.Compressor (e.g. make('top-k:k=10')), "
            f"got {type(comp).__name__}"
        )
    return comp


def _label(comp: Compressor) -> str:
    f = comp.facts
    if f.params:
        return f.name + ":" + ",".join(f"{k}={v}" for k, v in f.params.items())
    return f.name


def _alpha(comp: Compressor, d: int) -> float | None:
    return None if comp.facts.alpha is None else float(comp.facts.alpha(d))


def _omega(comp: Compressor, d: int) -> float | None:
    return None if comp.facts.omega is None else float(comp.facts.omega(d))


def _theory(name: str, **params: float | None) -> tuple[float | None, float | None]:
    """``(A, B)`` of :func:`ratedist.bounds.three_pc.three_pc_constants`; Nones if a param is."""
    if any(v is None for v in params.values()):
        return None, None
    return tuple(three_pc_constants(name, **params))


def _full_init(grad0, key, shared, gamma):
    return grad0, (), _full_msg(grad0)


def _comp_init(comp):
    """Mechanism state = compressor state, initial estimator = the full local gradient."""

    def init(grad0, key, shared, gamma):
        return grad0, comp.init(grad0), _full_msg(grad0)

    return init


# --------------------------------------------------------------------------- algorithms


@ALGORITHMS.register("gd", args=())
def gd() -> Algorithm:
    """Distributed gradient descent: every worker sends its full gradient (A = 1, B = 0)."""

    def step(h, y, x, mstate, key, shared, gamma):
        return x, mstate, _full_msg(x)

    return Algorithm(
        "gd",
        _full_init,
        step,
        lambda d, n: 1.0,
        lambda d, n: 0.0,
        config={"algorithm": "gd"},
        needs=(),
    )


@ALGORITHMS.register("compressed_sgd", args=("compressor",))
def compressed_sgd(compressor: Compressor) -> Algorithm:
    """Compressed (S)GD: ``g_i^{t+1} = C(grad_i(x^{t+1}))``; not a 3PC (``A = B = None``).

    With ``error_feedback(inner)`` as the compressor this is EF-SGD with the residual kept on
    the gradient scale. ``g_i^0 = C(grad_i(x^0))``.
    """
    comp = _check_compressor("compressor", compressor)

    def init(grad0, key, shared, gamma):
        cstate = comp.init(grad0)
        g, cstate, msg = _compress(comp, grad0, cstate, key, shared)
        return g, cstate, msg

    def step(h, y, x, cstate, key, shared, gamma):
        return _compress(comp, x, cstate, key, shared)

    return Algorithm(
        f"compressed_sgd[{_label(comp)}]",
        init,
        step,
        None,
        None,
        config={"algorithm": "compressed_sgd", "compressor": _label(comp)},
        needs=(),
    )


@ALGORITHMS.register("ef14", args=("compressor",))
def ef14(compressor: Compressor) -> Algorithm:
    """Classic error feedback (Seide et al. 2014; Stich et al. 2018, arXiv 1809.07599).

    ``v = e_i + gamma grad_i(x^{t+1})``, send ``m_i = C(v)``, keep ``e_i = v − m_i``; the
    server steps ``x − mean_i m_i``, written here as ``g_i = m_i/gamma``. Not a 3PC.
    ``e_i^0 = 0`` and ``g_i^0 = C(gamma grad_i(x^0))/gamma``.
    """
    comp = _check_compressor("compressor", compressor)

    def init(grad0, key, shared, gamma):
        cstate = comp.init(grad0)
        m, cstate, msg = _compress(comp, gamma * grad0, cstate, key, shared)
        return m / gamma, (gamma * grad0 - m, cstate), msg

    def step(h, y, x, mstate, key, shared, gamma):
        e, cstate = mstate
        v = e + gamma * x
        m, cstate, msg = _compress(comp, v, cstate, key, shared)
        return m / gamma, (v - m, cstate), msg

    return Algorithm(
        f"ef14[{_label(comp)}]",
        init,
        step,
        None,
        None,
        config={"algorithm": "ef14", "compressor": _label(comp)},
        needs=(),
    )


@ALGORITHMS.register("ef21", args=("compressor",))
def ef21(compressor: Compressor) -> Algorithm:
    """EF21 (arXiv 2106.05203): ``g_i^{t+1} = h + C(x − h)``.

    ``A = 1 − sqrt(1 − alpha)``, ``B = (1 − alpha)/(1 − sqrt(1 − alpha))`` (arXiv 2202.00998,
    Lemma 3.3), ``alpha`` from the compressor's facts. A sparsifier's ``sparse`` form is
    used when it has one: ``h`` is then updated at the K sent entries only (the same numbers
    as ``h + C(x − h)``, except that an untouched ``h_i = -0.0`` stays ``-0.0``).
    """
    comp = _check_compressor("compressor", compressor)

    def step(h, y, x, cstate, key, shared, gamma):
        if comp.sparse is not None:
            vals, idx, cstate, info = comp.sparse(x - h, cstate, **_call_keys(comp, key, shared))
            return h.at[idx].add(vals, unique_indices=True), cstate, _info_msg(info)
        c, cstate, msg = _compress(comp, x - h, cstate, key, shared)
        return h + c, cstate, msg

    return Algorithm(
        f"ef21[{_label(comp)}]",
        _comp_init(comp),
        step,
        lambda d, n: _theory("ef21", alpha=_alpha(comp, d))[0],
        lambda d, n: _theory("ef21", alpha=_alpha(comp, d))[1],
        config={"algorithm": "ef21", "compressor": _label(comp)},
        needs=("h",),
    )


def _trigger(h, y, x, zeta):
    """LAG/CLAG rule: communicate iff ``||x − h||^2 > zeta ||x − y||^2``."""
    return jnp.sum((x - h) ** 2) > zeta * jnp.sum((x - y) ** 2)


def _flag_msg(fired, msg: Message) -> Message:
    t = fired.astype(bits_dtype())
    out = _scale(msg, t)
    return out._replace(flag_bits=out.flag_bits + 1)


@ALGORITHMS.register("lag", args=("zeta",))
def lag(zeta: float) -> Algorithm:
    """Lazily aggregated gradient (LAG; arXiv 1805.09965 in the 3PC form of arXiv 2202.00998).

    Send the full gradient iff ``||x − h||^2 > zeta ||x − y||^2``, else reuse ``h``;
    ``A = 1``, ``B = zeta``. One flag bit per worker and step is charged for the decision.

    Raises:
        ValueError: ``zeta`` < 0.
    """
    z = check_nonnegative("zeta", zeta)

    def step(h, y, x, mstate, key, shared, gamma):
        fired = _trigger(h, y, x, z)
        return jnp.where(fired, x, h), mstate, _flag_msg(fired, _full_msg(x))

    return Algorithm(
        f"lag[zeta={z:g}]",
        _full_init,
        step,
        lambda d, n: 1.0,
        lambda d, n: z,
        has_trigger=True,
        config={"algorithm": "lag", "zeta": z},
    )


@ALGORITHMS.register("clag", args=("compressor", "zeta"))
def clag(compressor: Compressor, zeta: float) -> Algorithm:
    """Compressed LAG (arXiv 2202.00998, §3.4): ``h + C(x − h)`` if triggered, else ``h``.

    ``A = 1 − sqrt(1 − alpha)``, ``B = max{(1 − alpha)/(1 − sqrt(1 − alpha)), zeta}``.
    The compressor state is advanced only on triggered steps.

    Raises:
        ValueError: ``zeta`` < 0.  TypeError: not a compressor.
    """
    comp = _check_compressor("compressor", compressor)
    z = check_nonnegative("zeta", zeta)

    def step(h, y, x, cstate, key, shared, gamma):
        fired = _trigger(h, y, x, z)
        c, new_cstate, msg = _compress(comp, x - h, cstate, key, shared)
        g = jnp.where(fired, h + c, h)
        return g, _select(fired, new_cstate, cstate), _flag_msg(fired, msg)

    return Algorithm(
        f"clag[{_label(comp)},zeta={z:g}]",
        _comp_init(comp),
        step,
        lambda d, n: _theory("clag", alpha=_alpha(comp, d), zeta=z)[0],
        lambda d, n: _theory("clag", alpha=_alpha(comp, d), zeta=z)[1],
        has_trigger=True,
        config={"algorithm": "clag", "compressor": _label(comp), "zeta": z},
    )


@ALGORITHMS.register("tpc_v1", args=("compressor",))
def tpc_v1(compressor: Compressor) -> Algorithm:
    """3PCv1: ``y + C(x − y)``; ``A = 1``, ``B = 1 − alpha``.

    Bits: only ``C``'s message is charged (the server is assumed to know ``y``, as in the
    theory of arXiv 2202.00998 §3.5; a real system would also need ``y``).
    """
    comp = _check_compressor("compressor", compressor)

    def step(h, y, x, cstate, key, shared, gamma):
        c, cstate, msg = _compress(comp, x - y, cstate, key, shared)
        return y + c, cstate, msg

    return Algorithm(
        f"tpc_v1[{_label(comp)}]",
        _comp_init(comp),
        step,
        lambda d, n: _theory("tpc_v1", alpha=_alpha(comp, d))[0],
        lambda d, n: _theory("tpc_v1", alpha=_alpha(comp, d))[1],
        config={"algorithm": "tpc_v1", "compressor": _label(comp)},
        needs=("y",),
    )


@ALGORITHMS.register("tpc_v2", args=("compressor", "compressor"))
def tpc_v2(compressor: Compressor, unbiased: Compressor) -> Algorithm:
    """3PCv2: ``b = h + Q(x − y)``, ``g = b + C(x − b)``; ``A = alpha``, ``B = (1 − alpha) omega``.

    Args:
        compressor: contractive ``C`` (alpha).
        unbiased: unbiased ``Q`` (omega).
    """
    comp = _check_compressor("compressor", compressor)
    q = _check_compressor("unbiased", unbiased)

    def init(grad0, key, shared, gamma):
        return grad0, (comp.init(grad0), q.init(grad0)), _full_msg(grad0)

    def step(h, y, x, mstate, key, shared, gamma):
        cs, qs = mstate
        k1, k2 = jax.random.split(key)
        s1, s2 = _split_shared(shared)
        qv, qs, m1 = _compress(q, x - y, qs, k1, s1)
        b = h + qv
        c, cs, m2 = _compress(comp, x - b, cs, k2, s2)
        return b + c, (cs, qs), _add(m1, m2)

    def A(d, n):
        return _alpha(comp, d)

    def B(d, n):
        return _theory("tpc_v2", alpha=_alpha(comp, d), omega=_omega(q, d))[1]

    return Algorithm(
        f"tpc_v2[{_label(comp)},{_label(q)}]",
        init,
        step,
        A,
        B,
        config={"algorithm": "tpc_v2", "compressor": _label(comp), "unbiased": _label(q)},
    )


@ALGORITHMS.register("tpc_v3", args=("compressor", "algorithm"))
def tpc_v3(compressor: Compressor, inner: Algorithm) -> Algorithm:
    """3PCv3: ``b = inner 3PC(h, y, x)``, ``g = b + C(x − b)``.

    ``A = 1 − (1 − alpha)(1 − A1)``, ``B = (1 − alpha) B1`` with ``(A1, B1)`` of ``inner``.
    ``inner`` must not use a shared coin or a trigger.

    Raises:
        TypeError: ``inner`` is not an Algorithm.  ValueError: inner is not a 3PC.
    """
    comp = _check_compressor("compressor", compressor)
    if not isinstance(inner, Algorithm):
        raise TypeError(f"inner must be an Algorithm, got {type(inner).__name__}")
    if inner.A is None or inner.coin_p is not None or inner.has_trigger:
        raise ValueError(f"inner must be a coin-free, trigger-free 3PC, got {inner.name!r}")

    def init(grad0, key, shared, gamma):
        g, ist, msg = inner.init(grad0, key, shared, gamma)
        return g, (comp.init(grad0), ist), msg

    def step(h, y, x, mstate, key, shared, gamma):
        cs, ist = mstate
        k1, k2 = jax.random.split(key)
        s1, s2 = _split_shared(shared)
        b, ist, m1 = inner.step(h, y, x, ist, k1, s1, gamma)
        c, cs, m2 = _compress(comp, x - b, cs, k2, s2)
        return b + c, (cs, ist), _add(m1, m2)

    def A(d, n):
        a, a1 = _alpha(comp, d), inner.A(d, n)
        return None if a is None or a1 is None else 1.0 - (1.0 - a) * (1.0 - a1)

    def B(d, n):
        return _theory("tpc_v3", alpha=_alpha(comp, d), A1=inner.A(d, n), B1=inner.B(d, n))[1]

    return Algorithm(
        f"tpc_v3[{_label(comp)},{inner.name}]",
        init,
        step,
        A,
        B,
        config={"algorithm": "tpc_v3", "compressor": _label(comp), "inner": dict(inner.config)},
    )


@ALGORITHMS.register("tpc_v4", args=("compressor", "compressor"))
def tpc_v4(compressor: Compressor, compressor2: Compressor) -> Algorithm:
    """3PCv4: ``b = h + C2(x − h)``, ``g = b + C1(x − b)``.

    ``A = 1 − sqrt(1 − abar)``, ``B = (1 − abar)/(1 − sqrt(1 − abar))``,
    ``abar = 1 − (1 − alpha1)(1 − alpha2)``.
    """
    c1 = _check_compressor("compressor", compressor)
    c2 = _check_compressor("compressor2", compressor2)

    def init(grad0, key, shared, gamma):
        return grad0, (c1.init(grad0), c2.init(grad0)), _full_msg(grad0)

    def step(h, y, x, mstate, key, shared, gamma):
        s1, s2 = mstate
        k1, k2 = jax.random.split(key)
        r1, r2 = _split_shared(shared)
        v, s2, m2 = _compress(c2, x - h, s2, k2, r2)
        b = h + v
        c, s1, m1 = _compress(c1, x - b, s1, k1, r1)
        return b + c, (s1, s2), _add(m1, m2)

    def AB(d):
        return _theory("tpc_v4", alpha1=_alpha(c1, d), alpha2=_alpha(c2, d))

    return Algorithm(
        f"tpc_v4[{_label(c1)},{_label(c2)}]",
        init,
        step,
        lambda d, n: AB(d)[0],
        lambda d, n: AB(d)[1],
        config={"algorithm": "tpc_v4", "compressor": _label(c1), "compressor2": _label(c2)},
        needs=("h",),
    )


def _coin_method(comp: Compressor):
    """``x`` (full send) if the shared coin is 1, else ``h + C(x − y)``."""

    def step(h, y, x, cstate, key, shared, gamma):
        c, new_cs, msg = _compress(comp, x - y, cstate, key, shared)
        g = jnp.where(shared.coin, x, h + c)
        cs = _select(shared.coin, cstate, new_cs)
        full = _full_msg(x)
        return g, cs, _select(shared.coin, full, msg)

    return step


@ALGORITHMS.register("tpc_v5", args=("compressor", "p"))
def tpc_v5(compressor: Compressor, p: float) -> Algorithm:
    """3PCv5: w.p. ``p`` (coin shared by all workers) send ``x``, else ``h + C(x − y)``.

    ``A = 1 − sqrt(1 − p)``, ``B = (1 − p)(1 − alpha)/(1 − sqrt(1 − p))``.

    Raises:
        ValueError: ``p`` not in (0, 1].
    """
    comp = _check_compressor("compressor", compressor)
    p = check_in_interval("p", p, 0.0, 1.0, closed=(False, True))

    return Algorithm(
        f"tpc_v5[{_label(comp)},p={p:g}]",
        _comp_init(comp),
        _coin_method(comp),
        lambda d, n: 1.0 - math.sqrt(1.0 - p),
        lambda d, n: _theory("tpc_v5", alpha=_alpha(comp, d), p=p)[1],
        coin_p=p,
        config={"algorithm": "tpc_v5", "compressor": _label(comp), "p": p},
    )


@ALGORITHMS.register("marina", args=("compressor", "p"))
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
    comp = _check_compressor("compressor", compressor)
    p = check_in_interval("p", p, 0.0, 1.0, closed=(False, True))

    def B(d, n):
        omega = None if comp.facts.shared else _omega(comp, d)
        return _theory("marina", p=p, omega=omega, n_workers=n)[1]

    return Algorithm(
        f"marina[{_label(comp)},p={p:g}]",
        _comp_init(comp),
        _coin_method(comp),
        lambda d, n: p,
        B,
        coin_p=p,
        lyapunov="server",
        config={"algorithm": "marina", "compressor": _label(comp), "p": p},
    )
