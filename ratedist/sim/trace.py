"""What a run returns: :class:`Trace` and :class:`Bits`, assembled on the host from the
engines' per-chunk outputs (float64 numpy, cumulative bits, the Lyapunov check)."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import numpy as np

#: per-step diagnostics (None in results stored before they were recorded)
DIAGNOSTIC_FIELDS = (
    "grad_norm_sq_server",
    "ef_norm_sq",
    "quant_rel_error",
    "worker_step_min",
    "worker_step_max",
    "server_step_min",
    "server_step_max",
)


class Bits(NamedTuple):
    """Cumulative bits, raw counts, arrays ``(..., steps + 1, n_workers)`` (uplink, per
    worker) or ``(..., steps + 1)`` (downlink, per broadcast).

    ``bits[t]`` counts every message needed to form ``g^0, ..., g^t`` (so ``bits[0]`` is the
    initial message). Wire convention for uncompressed floats: ``FLOAT_BITS`` (32) per entry.

    Attributes:
        value: bit-packed value symbols (CompressInfo.value_bits).
        index: sparse positions (CompressInfo.index_bits).
        side: scales/norms (CompressInfo.side_bits).
        entropy: ideal entropy-coded payload of the compressor (CompressInfo.entropy_bits).
        flag: 1 bit per LAG/CLAG trigger decision.
        full: uncompressed d-vectors (GD, LAG sends, MARINA/3PCv5 coin steps, initial g_i^0,
            the identity downlink's broadcast).
    """

    value: np.ndarray
    index: np.ndarray
    side: np.ndarray
    entropy: np.ndarray
    flag: np.ndarray
    full: np.ndarray

    @property
    def container(self) -> np.ndarray:
        """Convention ``container``: bit-packed wire size (values + indices + side + flags + full)."""
        return self.value + self.index + self.side + self.flag + self.full

    @property
    def entropy_coded(self) -> np.ndarray:
        """Convention ``entropy``: ideal entropy-coded compressor payloads + flags + full sends."""
        return self.entropy + self.flag + self.full

    def total(self, convention: str = "container") -> np.ndarray:
        """Cumulative bits per worker under ``convention`` ("container" or "entropy")."""
        if convention == "container":
            return self.container
        if convention == "entropy":
            return self.entropy_coded
        raise ValueError(f"convention must be one of ['container', 'entropy'], got {convention!r}")


class Trace(NamedTuple):
    """Per-step record of a run (numpy; leading batch axes: hyperparameter points of a sweep,
    then replicas, when given).

    Step arrays have ``steps + 1`` entries (state ``t = 0..steps``); after a divergence they
    are truncated to the recorded steps (batched runs: NaN after each run's divergence).

    Attributes:
        f: ``f(x^t)`` (at the workers' point: ``Q(x^t)`` under weight quantization).
        f_gap: ``f(x^t) − f*`` (``f*`` = ``problem.f_star``, or 0 when None).
        grad_norm_sq: exact ``||grad f(x^t)||^2``.
        G: ``(1/n) sum_i ||g_i^t − grad f_i(x^t)||^2`` (exact local gradients).
        server_error: ``||g^t − grad f(x^t)||^2``.
        worker_error: ``||g_i^t − grad f_i(x^t)||^2`` per worker ``(…, steps+1, n)``; for a 3PC
            it is the compression error of the map ``C_{h,y}(x)``.
        lyapunov: ``Phi^t = f(x^t) − f* + gamma/(2A) E^t`` with ``E = G`` (3PCs) or
            ``server_error`` (MARINA); NaN when ``A`` is unknown or the round is not the 3PC
            round (sgd server, everyone answers, identity downlink).
        lyapunov_slack: ``Phi^{t+1} − Phi^t + (gamma/2) ||grad f(x^t)||^2`` (last entry NaN);
            ``<= 0`` in expectation by the 3PC theorem (pathwise for deterministic compressors).
        violations: number of steps with ``slack > tol_t``,
            ``tol_t = violation_rtol (|f^t| + |f^{t+1}| + gamma/(2A)(E^t + E^{t+1}) +
            (gamma/2)||grad f(x^t)||^2)``: the rounding of the sums that make ``f`` and ``G``.
        tpc_residual: ``(1/n) sum_i [||g_i^{t} − x_i||^2 − (1 − A)||h_i − y_i||^2 −
            B||x_i − y_i||^2]`` of the step that produced ``g^t`` (NaN at ``t = 0`` or when A/B
            unknown, for MARINA whose inequality is on the server estimator, and under partial
            participation); ``<= 0`` in expectation for a 3PC, on every path for deterministic
            ones.
        tpc_residual_max: the max over workers of the same residual.
        trigger_rate: fraction of workers whose trigger fired (LAG/CLAG; NaN otherwise).
        bits: :class:`Bits`, uplink, cumulative per worker.
        diverged_at: first step index with a non-finite metric, −1 if none (per batch entry).
        x: final server iterate ``(…, d)``.
        gamma, A, B: step size and 3PC constants used (A, B NaN when unknown); arrays over the
            points of a hyperparameter sweep.
        steps: number of steps requested.
        violation_tol: ``violation_rtol`` used.
        bits_down: :class:`Bits` of the downlink broadcast, cumulative ``(…, steps + 1)``.
        hyper: the hyperparameters of the run (arrays over the points of a sweep).
        grad_norm_sq_server: ``||grad f(x^t)||^2`` at the server's point (differs from
            ``grad_norm_sq``, taken at the workers' point, under weight quantization).
        ef_norm_sq: mean over workers of the squared error-feedback residual (NaN for methods
            without one; :attr:`ratedist.sim.Algorithm.diagnostics`).
        quant_rel_error: mean over workers of ``||C(v) − v||^2 / ||v||^2`` (NaN if unknown).
        worker_step_min, worker_step_max: range of a worker-side optimizer's effective step
            sizes over coordinates and workers (NaN for other methods).
        server_step_min, server_step_max: the same for the server optimizer (``gamma`` for
            ``optax.sgd``; ``lr/(sqrt(nu_hat) + eps)`` for :class:`ratedist.sim.AdamServer`;
            NaN at ``t = 0`` and for other transformations).
        answered: bool ``(…, steps+1, n)``: whether worker ``i`` answered at step ``t`` (the
            participation stage's draw, logged per step; all True at ``t = 0`` and when
            everyone answers). None in results stored before it was recorded.
    """

    f: np.ndarray
    f_gap: np.ndarray
    grad_norm_sq: np.ndarray
    G: np.ndarray
    server_error: np.ndarray
    worker_error: np.ndarray
    lyapunov: np.ndarray
    lyapunov_slack: np.ndarray
    violations: np.ndarray
    tpc_residual: np.ndarray
    tpc_residual_max: np.ndarray
    trigger_rate: np.ndarray
    bits: Bits
    diverged_at: np.ndarray
    x: np.ndarray
    gamma: Any
    A: Any
    B: Any
    steps: int
    violation_tol: float
    bits_down: Bits | None = None
    hyper: dict[str, Any] | None = None
    answered: np.ndarray | None = None
    grad_norm_sq_server: np.ndarray | None = None
    ef_norm_sq: np.ndarray | None = None
    quant_rel_error: np.ndarray | None = None
    worker_step_min: np.ndarray | None = None
    worker_step_max: np.ndarray | None = None
    server_step_min: np.ndarray | None = None
    server_step_max: np.ndarray | None = None

    def uplink_per_round(self, convention: str = "container") -> np.ndarray:
        """Uplink bits of each step summed over the workers, ``(…, steps+1)`` (entry 0: the
        initial messages). Stragglers send nothing, so this is the round's traffic."""
        total = self.bits.total(convention).sum(axis=-1)
        return np.diff(total, axis=-1, prepend=0.0)

    def uplink_total(self, convention: str = "container") -> np.ndarray:
        """Cumulative uplink bits of all workers, ``(…, steps+1)``."""
        return self.bits.total(convention).sum(axis=-1)

    def uplink_per_answering_worker(self, convention: str = "container") -> np.ndarray:
        """Bits per answering worker in each step, ``(…, steps+1)`` (NaN when nobody
        answered; needs :attr:`answered`).

        Raises:
            ValueError: the trace has no ``answered`` record.
        """
        if self.answered is None:
            raise ValueError("this trace has no 'answered' record (stored by an older version)")
        m = np.asarray(self.answered).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(m > 0, self.uplink_per_round(convention) / np.maximum(m, 1), np.nan)


def to_host(out, lead: int, single: bool):
    """Device outputs -> float64 numpy with the step axis (after ``lead`` batch axes) before
    the worker axis."""
    m, err, bits, answered, dbits = out

    def scal(a):
        a = np.asarray(a, np.float64)
        return np.expand_dims(a, lead) if single else a

    def per_worker(a, dtype=np.float64):
        a = np.asarray(a, dtype)  # (..., N) for init, (..., N, size) for a chunk
        return np.expand_dims(a, lead) if single else np.swapaxes(a, -1, -2)

    return (
        {k: scal(v) for k, v in m.items()},
        per_worker(err),
        tuple(per_worker(b) for b in bits),
        tuple(scal(b) for b in dbits),
        per_worker(answered, bool),
    )


def trim(host, take: int, lead: int):
    """The first ``take`` steps of a chunk's host outputs."""
    sl = (slice(None),) * lead + (slice(0, take),)
    return jax.tree_util.tree_map(lambda a: a[sl], host)


def health(host) -> np.ndarray:
    m = host[0]
    return m["f"] + m["grad_norm_sq"]


def assemble(outs, lead, problem, name, gamma, A, B, steps, rtol, x_final, lyap, hyper):
    """The :class:`Trace` of a run from its host chunks.

    Args:
        outs: :func:`to_host` outputs of init and of each chunk, in order.
        lead: number of leading batch axes (sweep points, replicas).
        gamma, A, B: floats, or arrays over the leading sweep axis.
        lyap: ``"workers"``/``"server"`` (which error enters Phi) or None (no 3PC Lyapunov).
    """
    cat = lambda *a: np.concatenate(a, axis=lead)  # noqa: E731
    m = {k: cat(*(o[0][k] for o in outs)) for k in outs[0][0]}
    err = cat(*(o[1] for o in outs))
    bits = [np.cumsum(cat(*(o[2][i] for o in outs)), axis=lead) for i in range(6)]
    dbits = [np.cumsum(cat(*(o[3][i] for o in outs)), axis=lead) for i in range(6)]
    answered = cat(*(o[4] for o in outs))
    bad = ~np.isfinite(health((m,)))
    first = np.where(bad.any(axis=-1), bad.argmax(axis=-1), -1)
    if np.any(first >= 0):
        warnings.warn(
            f"{name} on {problem.name} diverged (non-finite iterate) at step "
            f"{first.tolist()} with gamma={_fmt(gamma)}; the trace is truncated there",
            RuntimeWarning,
            stacklevel=3,
        )
        if lead == 0:
            keep = int(first)
            m = {k: v[:keep] for k, v in m.items()}
            err, bits, dbits = err[:keep], [b[:keep] for b in bits], [b[:keep] for b in dbits]
            answered = answered[:keep]
        else:
            T = m["f"].shape[-1]
            mask = np.arange(T) >= np.where(first >= 0, first, T)[..., None]
            m = {k: np.where(mask, np.nan, v) for k, v in m.items()}
            err = np.where(mask[..., None], np.nan, err)
            bits = [np.where(mask[..., None], np.nan, b) for b in bits]
            dbits = [np.where(mask, np.nan, b) for b in dbits]
    f_star = 0.0 if problem.f_star is None else problem.f_star
    f_gap = m["f"] - f_star
    E = m["server_error"] if lyap == "server" else m["G"]
    nd = f_gap.ndim
    g_, A_ = _bcast(gamma, nd), _bcast(A, nd)
    known = lyap is not None and not np.all(np.isnan(A_))
    with np.errstate(invalid="ignore", over="ignore"):
        phi = f_gap + g_ / (2 * A_) * E if known else np.full_like(f_gap, np.nan)
        slack = np.full_like(phi, np.nan)
        slack[..., :-1] = phi[..., 1:] - phi[..., :-1] + g_ / 2 * m["grad_norm_sq"][..., :-1]
        scale = np.full_like(phi, np.nan)
        scale[..., :-1] = (
            np.abs(m["f"][..., 1:])
            + np.abs(m["f"][..., :-1])
            + abs(f_star)
            + (g_ / (2 * A_) * (E[..., 1:] + E[..., :-1]) if known else 0.0)
            + g_ / 2 * m["grad_norm_sq"][..., :-1]
        )
        viol = np.sum(np.nan_to_num(slack - rtol * scale, nan=-1.0) > 0, axis=-1)
    return Trace(
        f=m["f"],
        f_gap=f_gap,
        grad_norm_sq=m["grad_norm_sq"],
        G=m["G"],
        server_error=m["server_error"],
        worker_error=err,
        lyapunov=phi,
        lyapunov_slack=slack,
        violations=np.asarray(viol),
        tpc_residual=m["tpc_residual"],
        tpc_residual_max=m["tpc_residual_max"],
        trigger_rate=m["trigger_rate"],
        bits=Bits(*bits),
        diverged_at=np.asarray(first),
        x=x_final,
        gamma=gamma,
        A=A,
        B=B,
        steps=steps,
        violation_tol=rtol,
        bits_down=Bits(*dbits),
        hyper=hyper,
        answered=answered,
        **{k: m[k] for k in DIAGNOSTIC_FIELDS},
    )


def _bcast(v, nd: int):
    """A float, or an array over the sweep axis, shaped to broadcast against step arrays."""
    a = np.asarray(v, np.float64)
    return a.reshape(a.shape + (1,) * (nd - a.ndim)) if a.ndim else float(a)


def _fmt(v) -> str:
    a = np.asarray(v)
    return f"{float(a):g}" if a.ndim == 0 else np.array2string(a, precision=4)
