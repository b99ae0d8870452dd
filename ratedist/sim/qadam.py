"""Distributed Adam with quantization and error feedback (SPEC §5; arXiv 2004.14180) as
simulator rounds.

Two modes (registry :data:`QADAM_MODES`):

* ``"server"`` — mode (a): the moments live on the server (``optax.adam``/``amsgrad`` as the
  round's server optimizer, :class:`~ratedist.sim.stages.AdamServer`); each worker sends
  ``C(grad_i + e_i)`` with the EF14 residual ``e_i`` (``compressed_sgd(error_feedback(C))``;
  without error feedback ``C(grad_i)``).
* ``"worker"`` — mode (b): every worker runs Adam on its own gradient and sends the
  compressed direction with error feedback (:func:`~ratedist.sim.algorithms.local_adam`);
  the server averages and steps ``x <- x − gamma mean_i g_i``.

Optionally the downlink quantizes the weights (``weights=`` a compressor, e.g.
``make("grid:delta=0.01")`` if registered, or any other): the workers then take their
gradients at ``Q_w(x)`` while the server keeps ``x`` (``Trace.grad_norm_sq`` is
``||grad f(Q_w(x))||^2``, ``Trace.grad_norm_sq_server`` is ``||grad f(x)||^2``). In both
modes ``gamma`` is Adam's learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ratedist._registry import Registry
from ratedist.compressors.base import Compressor
from ratedist.compressors.feedback import error_feedback as ef_wrapper
from ratedist.sim.algorithms import compressed_sgd, local_adam
from ratedist.sim.method import check_compressor
from ratedist.sim.round import Round
from ratedist.sim.stages import (
    AdamServer,
    Downlink,
    adam_server,
    identity_downlink,
    quantized_weights,
)


class AdamSettings(NamedTuple):
    """Adam's constants for either mode (``gamma`` is the learning rate)."""

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    amsgrad: bool = False


#: ``mode -> (compressor, error_feedback, AdamSettings, downlink) -> Round``
QADAM_MODES: Registry[Callable[..., Round]] = Registry("quantized-Adam mode")


@QADAM_MODES.register("server")
def _server_mode(comp: Compressor, ef: bool, adam: AdamSettings, down: Downlink) -> Round:
    server: AdamServer = adam_server(b1=adam.b1, b2=adam.b2, eps=adam.eps, amsgrad=adam.amsgrad)
    alg = compressed_sgd(ef_wrapper(comp) if ef else comp)
    return Round(alg, server=server, downlink=down)


@QADAM_MODES.register("worker")
def _worker_mode(comp: Compressor, ef: bool, adam: AdamSettings, down: Downlink) -> Round:
    alg = local_adam(comp, ef, adam.b1, adam.b2, adam.eps, adam.amsgrad)
    return Round(alg, downlink=down)


def quantized_adam(
    mode: str,
    compressor: Compressor,
    *,
    error_feedback: bool = True,
    amsgrad: bool = False,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weights: Compressor | None = None,
) -> Round:
    """The simulator round of quantized distributed Adam (module docstring).

    Args:
        mode: ``"server"`` (moments on the server) or ``"worker"`` (moments on each worker).
        compressor: the gradient (mode a) or direction (mode b) quantizer; any registered
            compressor (``make("scaled-sign")``, ``make("qsgd:s=4")``, ``make("top-k:k=10")``,
            ``make("scalar:method=tnq,bits=2")``, ...).
        error_feedback: keep the EF residual on every worker.
        amsgrad: AMSGrad instead of Adam.
        b1, b2, eps: Adam's constants.
        weights: downlink weight quantizer, or None for full-precision weights.

    Returns:
        A :class:`~ratedist.sim.Round`; run it with ``run(round, problem, gamma=lr, ...)``.

    Raises:
        ValueError: unknown mode, bad Adam constants.  TypeError: a non-Compressor, non-bool
            flags.
    """
    build = QADAM_MODES.get(mode)
    comp = check_compressor("compressor", compressor)
    if not isinstance(error_feedback, bool):
        raise TypeError(f"error_feedback must be a bool, got {error_feedback!r}")
    adam_server(b1=b1, b2=b2, eps=eps, amsgrad=amsgrad)  # checks the constants
    down = identity_downlink() if weights is None else quantized_weights(weights)
    return build(comp, error_feedback, AdamSettings(b1, b2, eps, amsgrad), down)
