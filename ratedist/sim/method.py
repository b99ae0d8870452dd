"""A distributed method's worker mechanism: the :class:`Algorithm` record and its messages.

An algorithm is written for ONE worker (arXiv 2202.00998, Algorithm 1)::

    g_i^{t+1} = mechanism(h = g_i^t, y = grad_i(x^t), x = grad_i(x^{t+1}))

as a pair of pure functions

    init(grad0, key, shared, hp) -> (g_i^0, mstate, Message)
    step(h, y, x, mstate, key, shared, hp) -> (g_i^{t+1}, mstate, Message)

plus its theory. ``hp`` holds the round's scalar hyperparameters as traced float scalars of
the canonical float dtype (float64 under x64): ``hp["gamma"]`` (the step size) and the
algorithm's own (:attr:`Algorithm.hyper`: LAG's ``zeta``, the coin probability ``p``). They
are inputs of the compiled program, so another step size or threshold reuses it and a sweep
over them is one vmapped program. A mechanism casts a hyperparameter to its data's dtype
(:func:`as_dtype`) where a Python float would have been weakly typed, so float32 runs are
float32 throughout.

Randomness is explicit and of two kinds. ``key`` is the worker's own key,
``jax.random.fold_in(step_key, worker_index)``. ``shared`` (:class:`Shared`) is identical on
every worker: ``shared.coin``, one Bernoulli(``hp["p"]``) draw from the step key (3PCv5,
MARINA), and ``shared.key``, which compressors declaring ``facts.shared`` (PermK) receive
together with ``shared.worker``, the worker's index. All engines draw the same numbers.

Bits: a :class:`Message` carries what one worker sends in one step as raw counts: the
compressor's :class:`~ratedist.compressors.CompressInfo` fields (zeroed when a trigger
suppressed the send), ``flag_bits`` (1 per LAG/CLAG trigger decision) and ``full_bits``
(``d * FLOAT_BITS`` for an uncompressed vector: GD, LAG sends, MARINA/3PCv5 coin steps,
the initial ``g_i^0 = grad f_i(x^0)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ratedist.bounds.three_pc import three_pc_constants
from ratedist.compressors.base import FLOAT_BITS, Compressor

#: ``(dim, n_workers, hyper) -> constant`` (None where a compressor declares no alpha/omega)
Constant = Callable[[int, int, Mapping[str, float]], float | None]


class Message(NamedTuple):
    """Raw bit counts one worker sends in one step (JAX float scalars) and its trigger flag."""

    value_bits: Any
    index_bits: Any
    side_bits: Any
    entropy_bits: Any
    flag_bits: Any
    full_bits: Any
    triggered: Any


class PartitionGrads(NamedTuple):
    """A coded worker's gradient under ``encode="partitions"`` (:func:`ratedist.sim.coded.coded`): its summands, one per held
    partition (rows padded to the longest worker with zeros and ``real`` False).

    Attributes:
        parts: ``(m, d)``, row ``r`` = ``B_ij grad f_j(x) / k`` for the ``r``-th partition
            ``j`` the worker holds; ``sum_r parts[r]`` is the worker's ``y_i``.
        real: bool ``(m,)``, False on padding rows (which send nothing).
    """

    parts: Any
    real: Any


def check_gradient_kind(algorithm: Algorithm, y: Any) -> None:
    """Raise when the oracle's gradient and the algorithm do not fit: per-partition gradients
    (:class:`PartitionGrads`) need a partition-wise algorithm and vice versa."""
    rows = isinstance(y, PartitionGrads)
    if rows != ("partitions" in algorithm.needs):
        raise TypeError(
            f"algorithm {algorithm.name!r} cannot run on this oracle: "
            + (
                "the coded oracle gives per-partition gradients (encode='partitions'); run it "
                "through Coded.round(algorithm, ...), which encodes each partition"
                if rows
                else "it encodes partitions one by one and needs coded(..., encode='partitions')"
            )
        )


class Shared(NamedTuple):
    """Randomness and context common to all workers in one step.

    Attributes:
        coin: the shared Bernoulli(``hp["p"]``) draw (None when the method has no coin).
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
        init: ``(grad0, key, shared, hp) -> (g_i^0, mstate, Message)``.
        step: ``(h, y, x, mstate, key, shared, hp) -> (g_i^{t+1}, mstate, Message)``.
        A: ``(dim, n_workers, hyper) -> A`` of the 3PC inequality (None: not a 3PC); returns
            None when a compressor does not declare the constant it needs.
        B: same for ``B``.
        coin: the method draws a coin shared by all workers with probability ``hyper["p"]``
            (3PCv5, MARINA).
        has_trigger: LAG/CLAG-style trigger (``Trace.trigger_rate`` is meaningful).
        lyapunov: ``"workers"`` (``Phi`` uses ``G^t``) or ``"server"`` (MARINA:
            ``||g^t − grad f(x^t)||^2``, arXiv 2102.07845 Thm 2.1).
        config: canonical JSON-able description.
        needs: which of ``h`` (the worker's estimator ``g_i^t``) and ``y`` (its previous
            gradient) ``step`` reads; the runner stores only those (plus what the 3PC check
            needs), which saves ``N x d`` memory traffic per step.
        hyper: the method's scalar hyperparameters and their values (``zeta``, ``p``); the
            runner passes them (or the values of a sweep) to ``init``/``step`` in ``hp``.
        bits_per_step: ``(dim, n_workers, hyper) -> bits`` one worker sends per step after
            the first, bit-packed container, in expectation over a shared coin and as if a
            trigger always fired (an upper bound for LAG/CLAG); for budgets without simulating.
        hyper_checks: per hyperparameter, the constructor's argument check (applied to every
            value of a sweep).
        deterministic: no randomness (no coin, deterministic compressors): the 3PC
            inequality and the Lyapunov step hold on every path.
        diagnostics: optional ``(x, g_i, mstate, hp) -> dict`` of per-worker scalars after a
            step (``x`` the gradient the worker saw, ``mstate`` its new state): any of
            ``"ef_norm_sq"`` (squared norm of an error-feedback residual),
            ``"quant_rel_error"`` (``||C(v) − v||^2 / ||v||^2`` of the vector ``v`` the
            compressor received: the empirical contraction), ``"step_min"``/``"step_max"``
            (a worker-side optimizer's effective step sizes). The trace averages the first two
            over workers and takes the min/max of the others; NaN where not reported.
    """

    name: str
    init: Callable[..., tuple[Any, Any, Message]]
    step: Callable[..., tuple[Any, Any, Message]]
    A: Constant | None
    B: Constant | None
    coin: bool = False
    has_trigger: bool = False
    lyapunov: str = "workers"
    config: Mapping[str, Any] = {}
    needs: tuple[str, ...] = ("h", "y")
    hyper: Mapping[str, float] = {}
    bits_per_step: Constant | None = None
    hyper_checks: Mapping[str, Callable[[float], float]] = {}
    deterministic: bool = True
    diagnostics: Callable[..., Mapping[str, Any]] | None = None

    @property
    def coin_p(self) -> float | None:
        """Probability of the shared coin (``hyper["p"]``), or None without a coin."""
        return float(self.hyper["p"]) if self.coin else None

    def constants(
        self, dim: int, n_workers: int, hyper: Mapping[str, float] | None = None
    ) -> tuple[float | None, float | None]:
        """``(A, B)`` for a problem of size ``dim`` with ``n_workers`` (Nones where unknown).

        ``hyper`` overrides entries of :attr:`hyper` (a point of a hyperparameter sweep).
        """
        if self.A is None or self.B is None:
            return None, None
        hp = {**self.hyper, **(hyper or {})}
        return self.A(dim, n_workers, hp), self.B(dim, n_workers, hp)


# ------------------------------------------------------------------------------ helpers


def bits_dtype():
    """dtype of bit counts: the default JAX float (float64 under x64), whatever ``x`` is."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def as_dtype(v, like):
    """Hyperparameter ``v`` in the dtype of array ``like`` (what a weakly typed float does)."""
    return jnp.asarray(v).astype(like.dtype)


def full_msg(x) -> Message:
    """An uncompressed d-vector of FLOAT_BITS floats (the wire convention, whatever the dtype)."""
    dt = bits_dtype()
    z = jnp.zeros((), dt)
    full = jnp.asarray(x.shape[-1] * FLOAT_BITS, dt)
    return Message(z, z, z, z, z, full, jnp.ones((), dt))


def info_msg(info) -> Message:
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


def add_msgs(a: Message, b: Message) -> Message:
    return Message(
        *(u + v for u, v in zip(a[:6], b[:6], strict=True)),
        jnp.maximum(a.triggered, b.triggered),
    )


def scale_msg(m: Message, s) -> Message:
    """Bits multiplied by ``s`` (0/1 trigger); ``triggered`` set to ``s``."""
    return Message(*(v * s for v in m[:6]), s)


def select(pred, a, b):
    """Pytree ``a`` where ``pred`` else ``b`` (leafwise)."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def call_keys(comp: Compressor, key, shared: Shared) -> dict[str, Any]:
    """The randomness a compressor gets: its worker's key, or the shared key, the worker's
    index and the number of workers (which a shared compressor checks against its own)."""
    if not comp.facts.shared:
        return {"key": key}
    return {"key": shared.key, "worker": shared.worker, "n_workers": shared.n_workers}


def split_shared(shared: Shared) -> tuple[Shared, Shared]:
    """Two independent shared streams (one per compressor of a two-compressor method)."""
    k1, k2 = jax.random.split(shared.key)
    return shared._replace(key=k1), shared._replace(key=k2)


def compress(comp: Compressor, v, cstate, key, shared: Shared):
    v_hat, cstate, info = comp.update(v, cstate, **call_keys(comp, key, shared))
    return v_hat, cstate, info_msg(info)


def check_compressor(name: str, comp: Any) -> Compressor:
    if not isinstance(comp, Compressor):
        raise TypeError(
            f"{name} must be a ratedist.compressors.Compressor (e.g. make('top-k:k=10')), "
            f"got {type(comp).__name__}"
        )
    return comp


def label(comp: Compressor) -> str:
    """The compressor's spec string, e.g. ``"top-k:k=3"``."""
    f = comp.facts
    if f.params:
        return f.name + ":" + ",".join(f"{k}={v}" for k, v in f.params.items())
    return f.name


def alpha_of(comp: Compressor, d: int) -> float | None:
    return None if comp.facts.alpha is None else float(comp.facts.alpha(d))


def omega_of(comp: Compressor, d: int) -> float | None:
    return None if comp.facts.omega is None else float(comp.facts.omega(d))


def theory(name: str, **params: float | None) -> tuple[float | None, float | None]:
    """``(A, B)`` of :func:`ratedist.bounds.three_pc.three_pc_constants`; Nones if a param is."""
    if any(v is None for v in params.values()):
        return None, None
    return tuple(three_pc_constants(name, **params))


def payload_bits(comp: Compressor, d: int) -> float:
    """Container bits of one call of ``comp`` on a standard normal d-vector (seed 0).

    What a worker's compressed message costs, for bit budgets computed without simulating.
    The container is data-independent for every registered compressor but ``grid`` and
    ``lattice`` (index widths follow the range of the symbols sent) and ``threshold`` (the
    number kept varies); at this input it is a typical size there, not a fixed one.
    """
    x = jnp.asarray(np.random.default_rng(0).standard_normal(d))
    kw = {"key": jax.random.key(0)}
    if comp.facts.shared:
        n = int(comp.facts.params["n_workers"])
        kw.update(worker=jnp.uint32(0), n_workers=n)
    _, _, info = comp.update(x, comp.init(x), **kw)
    return float(info.container_bits)
