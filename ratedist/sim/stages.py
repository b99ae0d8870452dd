"""The stages of a simulator round besides the worker mechanism: who answers, how the server
combines what arrives, how it steps, and what it broadcasts back.

One round (:mod:`ratedist.sim.round`) is::

    worker oracle       (f_i, grad f_i, the gradient the mechanism sees) at the broadcast point
    worker encoder      the Algorithm's mechanism (EF21, LAG, 3PCv2, ...) -> g_i and a Message
    participation       who answers this step (everyone; Bernoulli stragglers; exactly s; a
                        given pattern)
    aggregation         g = combine_i(g_i): the mean, the mean of those who answered,
                        pattern-dependent decoding weights, a majority vote
    server optimizer    an ``optax.GradientTransformation`` applied to g (``optax.sgd(gamma)``:
                        ``x <- x − gamma g``, the methods of the 3PC paper)
    downlink            identity, or a compressor on the broadcast weights or on the update
                        (optionally with server-side error feedback)

Each stage is a small record of pure functions, enrolled in a registry by name
(:data:`PARTICIPATION`, :data:`AGGREGATION`, :data:`DOWNLINKS`) so configs and the CLI can name
them. Scalars a stage reads from ``hp`` (the straggler probability) are inputs of the compiled
program like ``gamma``.

Conventions (decided here, documented once):

* Step 0 (``g_i^0``) is complete: participation applies to steps ``t >= 1``.
* A worker that does not answer at step ``t`` does nothing that step: its mechanism state is
  unchanged, it sends no bits, and — for the ``"mean"`` aggregation — the server reuses the
  last estimator it received from it (``g_i^t = g_i^{t-1}``, as in EF21 with partial
  participation). The memoryless aggregations (``"mean_active"``, ``"decode"``,
  ``"majority"``) ignore it.
* The per-worker 3PC residual and the Lyapunov check assume full participation and the
  ``optax.sgd`` server; with another participation or server optimizer they are NaN.
* Downlink bits are charged per step on the broadcast: a full ``d * FLOAT_BITS`` vector for
  the identity (``x^0`` is common knowledge: 0 bits at ``t = 0``), the compressor's message
  otherwise (``t = 0`` included for weight quantization, whose ``Q(x^0)`` must be sent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ratedist._registry import Registry
from ratedist._validation import check_in_interval, check_int, check_positive
from ratedist.compressors.base import FLOAT_BITS, Compressor
from ratedist.sim.method import as_dtype, bits_dtype, check_compressor, label

# ------------------------------------------------------------------------- participation

#: Registry of participation models (who answers in a step). Fact ``hyper``: constructor
#: parameter -> the name of the hyperparameter (input of the compiled program) it sets, so
#: that sweeps over it share one program (:mod:`ratedist.sim.sweep`).
PARTICIPATION: Registry[Callable[..., Participation]] = Registry("participation")


class Participation(NamedTuple):
    """Who answers in a step.

    Attributes:
        name: label.
        sample: ``(key, t, n_workers, hp) -> mask`` (bool ``(n_workers,)``, True = answers),
            the same on every worker (``key`` is shared); None: everyone, always.
        config: JSON-able description.
        hyper: scalar hyperparameters it reads from ``hp`` and their values.
        hyper_checks: per hyperparameter, the constructor's argument check.
        check: ``n_workers -> None``, raising ValueError when the model does not fit a
            problem with that many workers (checked before anything is compiled).
    """

    name: str
    sample: Callable[..., Any] | None
    config: Mapping[str, Any]
    hyper: Mapping[str, float] = {}
    hyper_checks: Mapping[str, Callable[[float], float]] = {}
    check: Callable[[int], None] | None = None


@PARTICIPATION.register("all")
def everyone() -> Participation:
    """Every worker answers at every step (the default)."""
    return Participation("all", None, {"participation": "all"})


def _check_straggle_p(p: Any) -> float:
    return check_in_interval("p", p, 0.0, 1.0, closed=(True, False))


@PARTICIPATION.register("bernoulli", hyper={"p": "straggle_p"})
def bernoulli_stragglers(p: float) -> Participation:
    """Each worker straggles independently with probability ``p`` at every step.

    ``p`` is the hyperparameter ``"straggle_p"`` (an input of the compiled program).

    Raises:
        ValueError: ``p`` not in [0, 1).
    """
    p = _check_straggle_p(p)

    def sample(key, t, n, hp):
        return ~jax.random.bernoulli(key, hp["straggle_p"], (n,))

    return Participation(
        f"bernoulli[p={p:g}]",
        sample,
        {"participation": "bernoulli", "p": p},
        {"straggle_p": p},
        {"straggle_p": _check_straggle_p},
    )


@PARTICIPATION.register("exactly")
def exactly_stragglers(s: int) -> Participation:
    """Exactly ``s`` workers, uniformly at random, straggle at every step.

    Raises:
        ValueError: ``s`` < 0 (and, at run time, ``s`` >= the number of workers).
    """
    s = check_int("s", s, min_value=0)

    def sample(key, t, n, hp):
        rank = jnp.argsort(jax.random.uniform(key, (n,)))
        return rank >= s

    def check(n):
        if s >= n:
            raise ValueError(f"s must be < n_workers = {n} for 'exactly' stragglers, got {s}")

    return Participation(
        f"exactly[s={s}]", sample, {"participation": "exactly", "s": s}, check=check
    )


@PARTICIPATION.register("pattern")
def pattern_stragglers(mask: Any) -> Participation:
    """A given (e.g. adversarial) pattern: ``mask[(t − 1) % len(mask)]`` answers at step ``t``.

    Args:
        mask: bool array ``(period, n_workers)``, True = answers.

    Raises:
        ValueError: not a 2-D boolean array with at least one row.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] < 1 or m.dtype != np.bool_:
        raise ValueError(
            f"mask must be a boolean array of shape (period, n_workers), got dtype {m.dtype} "
            f"and shape {m.shape}"
        )
    table = jnp.asarray(m)

    def sample(key, t, n, hp):
        return table[(t - 1) % table.shape[0]]

    def check(n):
        if m.shape[1] != n:
            raise ValueError(f"mask must have n_workers = {n} columns, got {m.shape[1]}")

    return Participation(
        f"pattern[{m.shape[0]}x{m.shape[1]}]",
        sample,
        {"participation": "pattern", "mask": m.astype(int).tolist()},
        check=check,
    )


# --------------------------------------------------------------------------- aggregation

#: Registry of server aggregation rules.
AGGREGATION: Registry[Callable[..., Aggregation]] = Registry("aggregation")


class Aggregation(NamedTuple):
    """How the server combines the workers' estimators into ``g``.

    ``g = finish(sum_i w_i g_i)`` with per-worker weights ``w_i = weight(mask, i, n, hp)``;
    ``weight`` None is the plain mean over all workers (the server's latest ``g_i`` of each,
    computed in a fixed order so that the engines agree bit for bit).

    Attributes:
        name: label.
        weight: ``(mask, worker, n_workers, hp) -> w_i`` or None (mean).
        finish: ``sum -> g`` (e.g. ``jnp.sign`` for a majority vote) or None.
        stale: non-answering workers contribute their last delivered ``g_i``.
        config: JSON-able description.
    """

    name: str
    weight: Callable[..., Any] | None
    finish: Callable[[Any], Any] | None
    stale: bool
    config: Mapping[str, Any]


@AGGREGATION.register("mean")
def mean() -> Aggregation:
    """``g = (1/n) sum_i g_i`` over all workers (stale ``g_i`` for those who did not answer)."""
    return Aggregation("mean", None, None, True, {"aggregation": "mean"})


@AGGREGATION.register("mean_active")
def mean_active() -> Aggregation:
    """The mean over the workers that answered (``0`` if none did)."""

    def weight(mask, i, n, hp):
        return mask[i] / jnp.maximum(1, jnp.sum(mask))

    return Aggregation("mean_active", weight, None, False, {"aggregation": "mean_active"})


@AGGREGATION.register("decode")
def decode(weights: Callable[[Any, Any], Any], name: str = "decode") -> Aggregation:
    """Pattern-dependent decoding: ``g = sum_i w_i(mask) g_i`` (gradient coding).

    Args:
        weights: ``(mask, worker) -> w_i``, a JAX function of the participation mask
            (bool ``(n,)``) and the worker's index; ``w_i`` of a straggler is ignored (0).
        name: label.
    """
    if not callable(weights):
        raise TypeError(f"weights must be a function (mask, worker) -> w, got {weights!r}")

    def weight(mask, i, n, hp):
        return jnp.where(mask[i], weights(mask, i), 0)

    return Aggregation(name, weight, None, False, {"aggregation": "decode", "name": name})


@AGGREGATION.register("majority")
def majority() -> Aggregation:
    """Majority vote of the answering workers: ``g = sign(sum_i m_i g_i)`` (signSGD-MV)."""

    def weight(mask, i, n, hp):
        return mask[i].astype(jnp.float32)

    return Aggregation("majority", weight, jnp.sign, False, {"aggregation": "majority"})


# ----------------------------------------------------------------------- server optimizer


ServerOptimizer = optax.GradientTransformation | Callable[[Mapping[str, Any]], Any]


def sgd_server(hp: Mapping[str, Any], like: Any) -> optax.GradientTransformation:
    """The default server optimizer ``optax.sgd(gamma)`` (``x <- x − gamma g``)."""
    return optax.sgd(as_dtype(hp["gamma"], like))


def server_transform(server: Any, hp: Mapping[str, Any], like: Any):
    """The ``optax.GradientTransformation`` of a round: ``server`` as given, or built from
    ``hp`` when it is a function of the hyperparameters (None: :func:`sgd_server`)."""
    if server is None:
        return sgd_server(hp, like)
    if isinstance(server, optax.GradientTransformation):
        return server
    return server(hp)


class AdamServer(NamedTuple):
    """``optax.adam`` (or ``optax.amsgrad``) as the server optimizer, with its effective step
    sizes known to the simulator (``Trace.server_step_min``/``max``).

    Called with the round's hyperparameters it builds the transformation; ``lr`` None uses
    ``hp["gamma"]`` (so a step-size sweep is one compiled program).

    Attributes:
        lr: learning rate, or None for ``gamma``.
        b1, b2, eps: Adam's constants (optax's defaults).
        amsgrad: use ``optax.amsgrad`` (the running max of the bias-corrected second moment).
    """

    lr: float | None = None
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    amsgrad: bool = False

    def __call__(self, hp: Mapping[str, Any]) -> optax.GradientTransformation:
        lr = hp["gamma"] if self.lr is None else self.lr
        make = optax.amsgrad if self.amsgrad else optax.adam
        return make(lr, b1=self.b1, b2=self.b2, eps=self.eps)

    def effective_steps(self, state: Any, hp: Mapping[str, Any], like: Any):
        """``(min_j, max_j)`` of ``lr / (sqrt(nu_hat_j) + eps)`` after the update, with
        ``nu_hat`` the bias-corrected second moment (AMSGrad: its running max), the step that
        multiplies the bias-corrected first moment."""
        lr = as_dtype(hp["gamma"] if self.lr is None else self.lr, like)
        adam = state[0]
        if self.amsgrad:
            nu_hat = adam.nu_max
        else:
            nu_hat = adam.nu / (1 - as_dtype(self.b2, like) ** adam.count.astype(like.dtype))
        eff = lr / (jnp.sqrt(nu_hat) + as_dtype(self.eps, like))
        return jnp.stack([jnp.min(eff), jnp.max(eff)])


def adam_server(
    lr: float | None = None,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> AdamServer:
    """An :class:`AdamServer` with checked constants.

    Raises:
        ValueError: ``lr`` <= 0, ``b1``/``b2`` not in [0, 1), ``eps`` < 0.
        TypeError: ``amsgrad`` not a bool.
    """
    if lr is not None:
        lr = check_positive("lr", lr)
    b1 = check_in_interval("b1", b1, 0.0, 1.0, closed=(True, False))
    b2 = check_in_interval("b2", b2, 0.0, 1.0, closed=(True, False))
    eps = check_in_interval("eps", eps, 0.0, float("inf"), closed=(True, False))
    if not isinstance(amsgrad, bool):
        raise TypeError(f"amsgrad must be a bool, got {amsgrad!r}")
    return AdamServer(lr, b1, b2, eps, amsgrad)


def server_step_range(server: Any, state: Any, hp: Mapping[str, Any], like: Any):
    """``[min, max]`` effective step size of the server's update: ``gamma`` for the default
    ``optax.sgd(gamma)``, :meth:`AdamServer.effective_steps` for Adam, NaN for an opaque
    transformation."""
    if server is None:
        gamma = as_dtype(hp["gamma"], like)
        return jnp.stack([gamma, gamma])
    if isinstance(server, AdamServer):
        return server.effective_steps(state, hp, like)
    return jnp.full((2,), jnp.nan, like.dtype)


def check_server(server: Any) -> Any:
    if server is None or isinstance(server, optax.GradientTransformation) or callable(server):
        return server
    raise TypeError(
        "server must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), a function "
        f"hp -> GradientTransformation, or None, got {type(server).__name__}"
    )


# ------------------------------------------------------------------------------ downlink

#: Registry of downlink models.
DOWNLINKS: Registry[Callable[..., Downlink]] = Registry("downlink")


class Downlink(NamedTuple):
    """What the server broadcasts.

    Attributes:
        name: label.
        mode: ``"identity"`` (full weights), ``"weights"`` (workers compute at ``C(x)``) or
            ``"updates"`` (the server sends ``C(u + e)`` of its optimizer's update ``u``;
            server and workers apply it, so their weights agree).
        compressor: the downlink compressor (None for the identity).
        error_feedback: keep the server residual ``e`` (``"updates"`` mode).
        config: JSON-able description.
    """

    name: str
    mode: str
    compressor: Compressor | None
    error_feedback: bool
    config: Mapping[str, Any]


@DOWNLINKS.register("identity")
def identity_downlink() -> Downlink:
    """The full-precision weights are broadcast (``d * FLOAT_BITS`` bits per step)."""
    return Downlink("identity", "identity", None, False, {"downlink": "identity"})


def _check_downlink_compressor(comp):
    comp = check_compressor("compressor", comp)
    if comp.facts.shared:
        raise ValueError(
            f"compressor must use the server's own randomness on the downlink, got "
            f"{label(comp)!r} (shared randomness across workers)"
        )
    return comp


@DOWNLINKS.register("weights")
def quantized_weights(compressor: Compressor) -> Downlink:
    """Weight quantization: workers receive ``C(x)`` and take gradients there (arXiv 2004.14180)."""
    comp = _check_downlink_compressor(compressor)
    return Downlink(
        f"weights[{label(comp)}]",
        "weights",
        comp,
        False,
        {"downlink": "weights", "compressor": label(comp)},
    )


@DOWNLINKS.register("updates")
def compressed_updates(compressor: Compressor, error_feedback: bool = True) -> Downlink:
    """The server sends ``C(u + e)`` of its update ``u`` (server-side error feedback keeps
    ``e <- u + e − C(u + e)`` when ``error_feedback``)."""
    comp = _check_downlink_compressor(compressor)
    if not isinstance(error_feedback, bool):
        raise TypeError(f"error_feedback must be a bool, got {error_feedback!r}")
    tag = ",ef" if error_feedback else ""
    return Downlink(
        f"updates[{label(comp)}{tag}]",
        "updates",
        comp,
        error_feedback,
        {"downlink": "updates", "compressor": label(comp), "error_feedback": error_feedback},
    )


class DownState(NamedTuple):
    """Server-side downlink state: the compressor's state and the EF residual (or None)."""

    cstate: Any
    residual: Any


def _bits6(info=None, full=0.0):
    """(value, index, side, entropy, flag, full) bit counts of one broadcast."""
    dt = bits_dtype()
    z = jnp.zeros((), dt)
    if info is None:
        return (z, z, z, z, z, jnp.asarray(full, dt))
    c = lambda v: jnp.asarray(v, dt)  # noqa: E731
    return (
        c(info.value_bits),
        c(info.index_bits),
        c(info.side_bits),
        c(info.entropy_bits),
        z,
        z,
    )


def downlink_init(down: Downlink, x0, key):
    """``(state, x_worker^0, bits^0)``."""
    if down.mode == "identity":
        return DownState((), None), x0, _bits6()
    cstate = down.compressor.init(x0)
    res = jnp.zeros_like(x0) if down.error_feedback else None
    if down.mode == "weights":
        xw, cstate, info = down.compressor.update(x0, cstate, key=key)
        return DownState(cstate, res), xw, _bits6(info)
    return DownState(cstate, res), x0, _bits6()


def downlink_update(down: Downlink, state: DownState, updates, key):
    """``updates`` mode: ``(C(u + e), state, bits)``; other modes pass ``updates`` through."""
    if down.mode != "updates":
        return updates, state, None
    v = updates + state.residual if down.error_feedback else updates
    u_hat, cstate, info = down.compressor.update(v, state.cstate, key=key)
    res = v - u_hat if down.error_feedback else None
    return u_hat, DownState(cstate, res), _bits6(info)


def downlink_weights(down: Downlink, state: DownState, x, key, ubits):
    """``(x_worker, state, bits)`` after the server's step to ``x``."""
    if down.mode == "identity":
        return x, state, _bits6(full=x.shape[-1] * FLOAT_BITS)
    if down.mode == "weights":
        xw, cstate, info = down.compressor.update(x, state.cstate, key=key)
        return xw, state._replace(cstate=cstate), _bits6(info)
    return x, state, ubits
