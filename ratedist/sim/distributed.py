"""Multi-process simulation on JAX's distributed runtime.

Call :func:`initialize` once, before any JAX computation, in every process of the job; then
``run(..., engine="shard_map")`` places the workers on a 1-D mesh over ALL devices of ALL
processes (``jax.devices()``), unchanged::

    from ratedist.sim import distributed, run
    distributed.initialize()          # flags, RATEDIST_* variables or the cluster's detection
    trace = run(alg, problem, steps=1000, key=key, engine="shard_map", aggregate="gather")
    if distributed.is_main():
        save(trace)                   # every process holds the same complete trace

What each process does (:mod:`ratedist.sim.runner`):

* the worker-sharded inputs (problem data, worker indices) are built with
  :func:`jax.make_array_from_callback`, so a process copies to its devices only the rows of
  its own workers (the host still holds the whole problem object); the per-worker state (``h``, ``y``, ...) stays on the devices that own it;
* between chunks the outputs (metrics, per-worker errors and bits) are gathered with
  :func:`jax.experimental.multihost_utils.process_allgather` — a collective every process
  joins — so :func:`ratedist.sim.run` returns the same complete :class:`~ratedist.sim.Trace`
  on every process (decision: cheaper to reason about than a process-0-only trace, and the
  trace is O(steps x N), small next to the O(N x d) state). Files are written by process 0
  only (:func:`is_main`).

Reproducibility: worker ``i`` draws from ``fold_in(fold_in(key, t), i)`` whatever device or
process it lands on, so a layout changes no random number; with ``aggregate="gather"`` the
server's mean is the same fixed-order matrix-vector product as under ``vmap``, so iterates and
bits agree bit for bit with a single-process run (tested with 2 processes x 4 CPU devices).

Failure: the coordination service (process 0) declares a process dead when it has sent no
heartbeat for ``heartbeat_timeout`` seconds and every other process then aborts (SIGABRT,
non-zero exit) with ``Terminating process because the JAX distributed service detected fatal
errors ... The following tasks are unhealthy (stopped sending heartbeats): <id>``; when process
0 itself dies the others lose the coordinator and abort the same way. So a lost process ends
the job within about ``heartbeat_timeout`` seconds (default :data:`DEFAULT_HEARTBEAT_TIMEOUT_S`)
instead of hanging in a collective. SIGTERM did not stop a process of a running job here (JAX
registers a SIGTERM handler for preemption notices): :func:`launch` stops processes with
SIGKILL.

On CPU the cross-process collectives are gloo over TCP (``jax_cpu_collectives_implementation``,
the default in jax 0.10; set explicitly here). ``python3 -m ratedist.sim.launch`` starts
a local job (:func:`launch`); ``docs/cluster.md`` has the commands for GPU nodes and SLURM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ratedist._validation import check_int, check_positive
from ratedist.sim import engines

ENV_COORDINATOR = "RATEDIST_COORDINATOR"
ENV_NUM_PROCESSES = "RATEDIST_NUM_PROCESSES"
ENV_PROCESS_ID = "RATEDIST_PROCESS_ID"
ENV_HEARTBEAT_TIMEOUT = "RATEDIST_HEARTBEAT_TIMEOUT"
#: seconds without a heartbeat after which a process is declared dead and the job aborts
DEFAULT_HEARTBEAT_TIMEOUT_S = 30
#: seconds the processes wait for each other at start-up
DEFAULT_INITIALIZATION_TIMEOUT_S = 120


class Layout(NamedTuple):
    """Where this process sits in the job.

    Attributes:
        process_id: this process (0 is the coordinator and the writer).
        num_processes: processes in the job.
        local_devices: devices of this process.
        devices: all devices of the job, the order of the shard_map mesh.
    """

    process_id: int
    num_processes: int
    local_devices: tuple
    devices: tuple


def layout() -> Layout:
    """This process's :class:`Layout` (one process: ``Layout(0, 1, devices, devices)``)."""
    return Layout(
        jax.process_index(),
        jax.process_count(),
        tuple(jax.local_devices()),
        tuple(jax.devices()),
    )


def is_multiprocess() -> bool:
    """Whether the job spans several processes (after :func:`initialize`)."""
    return jax.process_count() > 1


def is_main() -> bool:
    """Whether this is process 0, the one that writes results."""
    return jax.process_index() == 0


def _env_int(name: str, env: Mapping[str, str], min_value: int) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    return check_int(name, value, min_value=min_value)


def resolve(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[str | None, int | None, int | None]:
    """The job's ``(coordinator, num_processes, process_id)``: arguments first, then the
    ``RATEDIST_COORDINATOR``/``RATEDIST_NUM_PROCESSES``/``RATEDIST_PROCESS_ID`` variables;
    what is still None is left to JAX's cluster detection (SLURM, Open MPI, TPU, ``JAX_*``).

    Raises:
        ValueError: a value of the wrong form (coordinator not ``host:port``, a count < 1,
            ``process_id`` outside ``[0, num_processes)``).
    """
    env = os.environ if env is None else env
    coord = coordinator if coordinator is not None else (env.get(ENV_COORDINATOR) or None)
    if coord is not None:
        host, sep, port = str(coord).rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"coordinator must be 'host:port', got {coord!r}")
    n = _env_int(ENV_NUM_PROCESSES, env, 1) if num_processes is None else num_processes
    if n is not None:
        n = check_int("num_processes", n, min_value=1)
    pid = _env_int(ENV_PROCESS_ID, env, 0) if process_id is None else process_id
    if pid is not None:
        pid = check_int("process_id", pid, min_value=0)
        if n is not None and pid >= n:
            raise ValueError(f"process_id must be in [0, num_processes = {n}), got {pid}")
    return coord, n, pid


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    heartbeat_timeout: float | None = None,
    initialization_timeout: float = DEFAULT_INITIALIZATION_TIMEOUT_S,
    cluster_detection_method: str | None = None,
) -> Layout:
    """Join the job: :func:`jax.distributed.initialize` with gloo CPU collectives.

    Must run before any JAX computation in the process (JAX's backends read the distributed
    client when they start). Values missing from the arguments come from :func:`resolve`
    (``RATEDIST_*`` variables), then from JAX's cluster detection (SLURM: ``srun`` sets
    everything; the coordinator is the first node of the job).

    Args:
        coordinator: ``host:port`` of process 0's coordination service.
        num_processes: processes in the job.
        process_id: this process, in ``[0, num_processes)``.
        local_device_ids: the accelerators this process uses (GPU: one process per GPU
            passes its GPU; default all visible, or the SLURM/Open MPI assignment).
        heartbeat_timeout: seconds after which a silent process is declared dead and the
            job aborts (default ``RATEDIST_HEARTBEAT_TIMEOUT`` or
            :data:`DEFAULT_HEARTBEAT_TIMEOUT_S`); also the shutdown wait.
        initialization_timeout: seconds to wait for all processes to join.
        cluster_detection_method: passed to JAX ("slurm", "ompi", "mpi4py", "deactivate").

    Returns:
        This process's :class:`Layout`.

    Raises:
        ValueError: a malformed value (see :func:`resolve`), or no coordinator and no cluster
            to detect one from.
        RuntimeError: already initialized with another layout, or JAX already started.
    """
    coord, n, pid = resolve(coordinator, num_processes, process_id)
    if heartbeat_timeout is None:
        raw = os.environ.get(ENV_HEARTBEAT_TIMEOUT) or DEFAULT_HEARTBEAT_TIMEOUT_S
        try:
            heartbeat_timeout = float(raw)
        except ValueError:
            raise ValueError(f"{ENV_HEARTBEAT_TIMEOUT} must be a number, got {raw!r}") from None
    hb = max(1, round(check_positive("heartbeat_timeout", heartbeat_timeout)))
    init_s = max(1, round(check_positive("initialization_timeout", initialization_timeout)))
    if jax.distributed.is_initialized():
        here = layout()
        if (n is None or n == here.num_processes) and (pid is None or pid == here.process_id):
            return here
        raise RuntimeError(
            f"the distributed runtime is already initialized as process {here.process_id} of "
            f"{here.num_processes}, not as process {pid} of {n}"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coord,
            num_processes=n,
            process_id=pid,
            local_device_ids=local_device_ids,
            cluster_detection_method=cluster_detection_method,
            initialization_timeout=init_s,
            heartbeat_timeout_seconds=hb,
            shutdown_timeout_seconds=hb,
        )
    except ValueError as exc:
        raise ValueError(
            f"cannot start the distributed runtime ({exc}): give coordinator, num_processes "
            f"and process_id, set {ENV_COORDINATOR}, {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}, "
            "or run under a cluster JAX detects (SLURM, Open MPI)"
        ) from None
    return layout()


# ----------------------------------------------------------------------------- placement


def worker_sharded(tree: Any, n_workers: int) -> Any:
    """Global arrays of ``tree``'s leaves (leading axis ``n_workers``) split over workers.

    Each process copies to its devices only the rows of the workers they hold
    (:func:`jax.make_array_from_callback`); the sharding is the shard_map engine's
    (:func:`ratedist.sim.engines.worker_mesh`). Every process must pass the same values.

    Raises:
        ValueError: a leaf whose leading axis is not ``n_workers``.
    """
    sharding = NamedSharding(engines.worker_mesh(), PartitionSpec(engines.AXIS))

    def put(a):
        host = np.asarray(a)
        if host.ndim == 0 or host.shape[0] != n_workers:
            raise ValueError(
                f"worker data must have leading axis n_workers = {n_workers}, got shape "
                f"{host.shape}"
            )
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree_util.tree_map(put, tree)


def fetch(tree: Any) -> Any:
    """``tree`` with every array that spans other processes' devices made a numpy array of
    its global value on EVERY process: replicated ones from a local copy, sharded ones
    all-gathered (a collective: all processes must call it with the same structure).
    Process-local arrays (a vmap/loop run inside a multi-process job) are left as they are.
    """
    if not is_multiprocess():
        return tree
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    spans = [isinstance(a, jax.Array) and not a.is_fully_addressable for a in leaves]
    sharded = [a for a, s in zip(leaves, spans, strict=True) if s and not a.is_fully_replicated]
    gathered = iter(multihost_utils.process_allgather(sharded, tiled=True) if sharded else [])
    out = [
        (np.asarray(a.addressable_data(0)) if a.is_fully_replicated else next(gathered)) if s else a
        for a, s in zip(leaves, spans, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


def broadcast_from_main(value: int) -> int:
    """Process 0's integer ``value`` on every process (a collective: all processes call it in
    the same order); ``value`` itself in one process."""
    if not is_multiprocess():
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


# ----------------------------------------------------------------------------- launcher


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (bind port 0 and read the port the OS chose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def local_env(
    process_id: int,
    num_processes: int,
    coordinator: str,
    local_devices: int | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of process ``process_id`` of a local job (``RATEDIST_*`` set; with
    ``local_devices``, that many emulated CPU devices via ``XLA_FLAGS``)."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            ENV_COORDINATOR: coordinator,
            ENV_NUM_PROCESSES: str(num_processes),
            ENV_PROCESS_ID: str(process_id),
        }
    )
    if local_devices is not None:
        flags = [
            f
            for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")
        ]
        flags.append(f"--xla_force_host_platform_device_count={local_devices}")
        env["XLA_FLAGS"] = " ".join(flags)
    return env


def launch(
    argv: Sequence[str],
    num_processes: int,
    *,
    local_devices: int | None = None,
    timeout: float | None = None,
    grace: float = DEFAULT_HEARTBEAT_TIMEOUT_S + 10,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``python3 ARGV`` as a local job of ``num_processes`` processes (loopback
    coordinator on a free port) and wait for it.

    When a process fails, the others get ``grace`` seconds to abort on their own (the
    heartbeat timeout) and are then killed. Returns 0 when all succeed, else the first
    failure's exit status (negative: the signal), 124 after ``timeout`` seconds.

    Raises:
        ValueError: empty ``argv``, ``num_processes`` < 1, ``local_devices`` < 1.
    """
    if not argv:
        raise ValueError("argv must name a script (or -m module / -c code), got nothing")
    n = check_int("num_processes", num_processes, min_value=1)
    if local_devices is not None:
        local_devices = check_int("local_devices", local_devices, min_value=1)
    coord = f"127.0.0.1:{free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, *argv], env=local_env(i, n, coord, local_devices, base=env)
        )
        for i in range(n)
    ]
    start = time.monotonic()
    failed_at = None
    status = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            bad = [c for c in codes if c not in (None, 0)]
            if bad and failed_at is None:
                failed_at, status = time.monotonic(), bad[0]
            if all(c is not None for c in codes):
                return status
            now = time.monotonic()
            if failed_at is not None and now - failed_at > grace:
                return status
            if timeout is not None and now - start > timeout:
                return 124
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
