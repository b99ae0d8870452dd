"""Simulator throughput against the best numpy loop over workers, like for like.

Methods (float32, tridiagonal quadratic family: O(d) gradients, N workers, dimension d):

* ``ef21``: EF21 with Top-K, K = d/100 (numpy: ``np.argpartition``);
* ``ef_sign``: compressed SGD with error feedback and the scaled sign (EF14 on the gradient
  scale, ``compressed_sgd(error_feedback(scaled-sign))``);
* ``qsgd``: compressed SGD with QSGD, s = 15 (numpy: stochastic rounding with PCG64);
* ``tnq``: compressed SGD with the stochastic 3-bit TNQ scalar quantizer
  (``scalar:method=tnq,bits=3``; numpy: PCG64).

Both sides compute the metrics of every step (``f(x^t)``, ``||grad f(x^t)||^2``, ``G^t``);
the simulator runs with ``diagnostics=False`` and, unless ``--3pc-check``, ``check_3pc=False``
(the numpy loop computes no 3PC residual). The numpy loops (:data:`BASELINES`) are the best
numpy we could write: preallocated buffers, in-place ufuncs, one pass per operation, the
shared ``tridiag(-1, 2, -1) x`` once per step; ``tests/sim/test_bench_sim_baseline.py``
checks them against the simulator.

Like for like: by default the process pins itself to one core (``os.sched_setaffinity``)
and XLA runs single-threaded, so both sides get exactly one core; ``--cores all`` leaves the
affinity alone and lets XLA use its thread pool (numpy's BLAS may also use threads). Every
row reports CPU-seconds per wall-second (``time.process_time`` over ``time.perf_counter``)
of each side, and its fraction of the memory roofline: the minimal bytes a step must move
(:data:`MIN_BYTES`) over the step time, against numpy copy bandwidth measured in the same
run (``np.copyto`` of 256 MB, read + write counted).

Usage:
    python benchmarks/bench_sim.py                  # N in {8, 32, 128}, d in {1e5, 1e6}
    python benchmarks/bench_sim.py --cores all      # every core, both sides
    python benchmarks/bench_sim.py --sizes 8:100000 --methods ef21,ef_sign --engines vmap,loop,group

``--engines`` defaults to the simulator's default engine, ``"group"``
(:data:`ratedist.sim.engines.DEFAULT_ENGINE`: a ``lax.scan`` over cache-sized groups of workers,
vmapped inside each group); ``vmap`` and ``loop`` remain selectable for comparison.

Prints one Markdown table (median of ``--repeats`` interleaved repeats; ratio = simulator
steps/s over numpy steps/s, > 1: the simulator is faster; CPU ratio = the same in steps per
CPU-second, the steadier number when other jobs share the core).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple


def _cores_arg(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--cores" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--cores="):
            return a.split("=", 1)[1]
    return "first"


def _pin(spec: str) -> str:
    """Pin this process to one core (``spec``: a core id, or ``"first"`` of the allowed set);
    ``"all"`` leaves the affinity alone. Returns a description."""
    if spec == "all":
        return f"all cores ({len(os.sched_getaffinity(0))} allowed)"
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("--cores needs os.sched_setaffinity (Linux); use --cores all")
    allowed = sorted(os.sched_getaffinity(0))
    if spec == "first":
        core = allowed[0]
    elif spec.isdigit() and int(spec) in allowed:
        core = int(spec)
    else:
        raise SystemExit(f"--cores must be 'first', 'all' or one of {allowed}, got {spec!r}")
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


if __name__ == "__main__":
    _PINNED = _pin(_cores_arg(sys.argv))  # inherited by the exec below
    # Large fresh outputs are re-faulted page by page unless glibc keeps freed memory around.
    # (and XLA's threads on the main heap: a thread's own arena unmaps its emptied heaps)
    _ENV = {
        "MALLOC_TRIM_THRESHOLD_": "1000000000",
        "MALLOC_MMAP_THRESHOLD_": "1000000000",
        "MALLOC_ARENA_MAX": "1",
    }
    if _cores_arg(sys.argv) != "all":  # one core: XLA's thread pool only contends for it
        _ENV["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    if any(os.environ.get(k) != v for k, v in _ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_ENV})

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ratedist.compressors import error_feedback, make  # noqa: E402
from ratedist.sim import compressed_sgd, ef21, tridiagonal_quadratic  # noqa: E402
from ratedist.sim.engines import DEFAULT_ENGINE  # noqa: E402
from ratedist.sim.runner import make_stepper, theory_gamma  # noqa: E402

F32 = np.float32


# ------------------------------------------------------------------------- numpy baselines


class NumpyLoop:
    """The numpy reference: server ``x <- x - gamma g``, then a Python loop over workers
    (gradient, compressor, running sums), float32, every buffer preallocated.

    ``advance(steps)`` returns per step ``(f, ||grad f||^2, G)`` of the step's point, as the
    simulator's ``Trace`` has them; ``x`` and ``g`` are the server's state. A subclass gives
    the worker's mechanism: ``setup`` (its state), ``first(i, gi)`` (step 0) and
    ``step(i, gi)``; both return the message ``g_i`` (a d-vector that stays valid until the
    next call).
    """

    def __init__(self, prob: Any, gamma: float, k: int, seed: int = 0):
        n, d = prob.n_workers, prob.dim
        self.n, self.d, self.k = n, d, k
        self.a = (prob.data["nu"].astype(F32) / F32(4)).astype(F32)  # as the simulator: nu/4
        self.s = prob.data["shift"].astype(F32)
        self.b1 = prob.data["b1"].astype(F32)
        self.gamma = F32(gamma)
        self.x = prob.x0.astype(F32)
        self.rng = np.random.default_rng(seed)
        self.tx, self.gi, self.tmp = (np.empty(d, F32) for _ in range(3))
        self.g, self.gfull = np.zeros(d, F32), np.zeros(d, F32)
        self.setup()
        self.metrics0 = self._workers(self.first)

    def setup(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _grad(self, i: int) -> float:
        """``gi = A_i x - b_i`` into ``self.gi``; returns ``f_i(x)``."""
        gi, x = self.gi, self.x
        np.multiply(self.tx, self.a[i], out=gi)
        np.multiply(x, self.s[i], out=self.tmp)
        gi += self.tmp
        fi = 0.5 * float(x @ gi) - float(self.b1[i] * x[0])
        gi[0] -= self.b1[i]
        return fi

    def _workers(self, fn: Callable[[int, np.ndarray], np.ndarray]) -> tuple[float, ...]:
        x, tx = self.x, self.tx
        np.multiply(x, 2, out=tx)  # tridiag(-1, 2, -1) x, shared by the workers
        tx[1:] -= x[:-1]
        tx[:-1] -= x[1:]
        g, gfull, tmp = self.g, self.gfull, self.tmp
        g.fill(0)
        gfull.fill(0)
        f = G = 0.0
        for i in range(self.n):
            f += self._grad(i)
            msg = fn(i, self.gi)
            np.subtract(msg, self.gi, out=tmp)
            G += float(tmp @ tmp)
            g += msg
            gfull += self.gi
        g /= self.n
        gfull /= self.n
        return f / self.n, float(gfull @ gfull), G / self.n

    def advance(self, steps: int) -> list[tuple[float, ...]]:
        hist = []
        for _ in range(steps):
            np.multiply(self.g, self.gamma, out=self.tmp)
            self.x -= self.tmp
            hist.append(self._workers(self.step))
        return hist


class EF21TopK(NumpyLoop):
    """EF21 with Top-K: ``h_i += TopK(grad_i - h_i)`` at the K selected entries."""

    def setup(self):
        self.h = np.empty((self.n, self.d), F32)
        self.v, self.av = np.empty(self.d, F32), np.empty(self.d, F32)

    def first(self, i, gi):
        self.h[i] = gi
        return self.h[i]

    def step(self, i, gi):
        h, v, d, k = self.h[i], self.v, self.d, self.k
        np.subtract(gi, h, out=v)
        idx = np.argpartition(np.abs(v, out=self.av), d - k)[d - k :]
        h[idx] += v[idx]
        return h


class EFScaledSign(NumpyLoop):
    """Error feedback with the scaled sign: ``v = e_i + grad_i``, ``m = (||v||_1/d) sign v``,
    ``e_i = v - m`` (``np.copysign``: ``-0.0`` maps to ``-scale``, the simulator's sign to
    ``+scale``; no exact zero occurs here)."""

    def setup(self):
        self.e = np.zeros((self.n, self.d), F32)
        self.m, self.av = np.empty(self.d, F32), np.empty(self.d, F32)

    def first(self, i, gi):
        return self.step(i, gi)

    def step(self, i, gi):
        e = self.e[i]
        e += gi  # v
        scale = F32(np.abs(e, out=self.av).sum(dtype=F32) / F32(self.d))
        np.copysign(scale, e, out=self.m)
        e -= self.m
        return self.m


class QSGD(NumpyLoop):
    """QSGD with ``s = 15``: ``m = (||g||/s) sign(g) (floor(r) + [u < r - floor(r)])``,
    ``r = s |g| / ||g||``, ``u`` uniform from numpy's PCG64 (``Generator.random``)."""

    S = 15

    def setup(self):
        self.r, self.lo, self.u, self.m = (np.empty(self.d, F32) for _ in range(4))
        self.up = np.empty(self.d, bool)

    def first(self, i, gi):
        return self.step(i, gi)

    def step(self, i, gi):
        r, lo, u, m, s = self.r, self.lo, self.u, self.m, F32(self.S)
        norm = F32(np.sqrt(gi @ gi))
        if norm == 0:
            m.fill(0)
            return m
        np.abs(gi, out=r)
        r *= s / norm
        np.minimum(r, s, out=r)
        np.floor(r, out=lo)
        r -= lo  # probability of rounding up
        self.rng.random(out=u, dtype=F32)
        np.less(u, r, out=self.up)
        lo += self.up
        np.copysign(lo, gi, out=m)
        m *= norm / s
        return m


class TNQ(NumpyLoop):
    """Stochastic 3-bit TNQ: ``y = g / sigma`` (``sigma`` the rms), clipped to the outer
    levels, rounded up from its cell's lower level with probability (distance / cell width)
    with PCG64 uniforms; ``m = sigma * level``."""

    def setup(self):
        lv = np.asarray(make("scalar:method=tnq,bits=3").facts.params["levels"], F32)
        self.levels, self.inner = lv, lv[1:-1].copy()
        self.inv_width = (F32(1) / (lv[1:] - lv[:-1])).astype(F32)
        self.y, self.u, self.t, self.m = (np.empty(self.d, F32) for _ in range(4))
        self.up, self.lo = np.empty(self.d, bool), np.empty(self.d, np.intp)

    def first(self, i, gi):
        return self.step(i, gi)

    def step(self, i, gi):
        y, u, t, m, lv = self.y, self.u, self.t, self.m, self.levels
        sigma = F32(np.sqrt((gi @ gi) / F32(self.d)))
        if sigma == 0:
            m.fill(0)
            return m
        np.multiply(gi, F32(1) / sigma, out=y)
        np.clip(y, lv[0], lv[-1], out=y)
        lo = self.lo  # cell index 0..6: a compare-and-count over the 6 inner levels
        lo.fill(0)  # (np.searchsorted was 20x slower: 1.6 ms against 0.08 ms at d = 1e5)
        for level in self.inner:
            np.greater_equal(y, level, out=self.up)
            lo += self.up
        np.take(lv, lo, out=t)
        y -= t
        np.take(self.inv_width, lo, out=t)
        y *= t  # probability of rounding up
        self.rng.random(out=u, dtype=F32)
        np.less(u, y, out=self.up)
        lo += self.up
        np.take(lv * sigma, lo, out=m)
        return m


# ------------------------------------------------------------------------------ methods


class Method(NamedTuple):
    """A benchmarked method: the simulator's algorithm, its numpy loop, and the minimal
    bytes one step must move (``(n, d, k) -> bytes``, float32)."""

    build: Callable[[int], Any]
    baseline: type[NumpyLoop]
    min_bytes: Callable[[int, int, int], int]
    bytes_rule: str


def _server_bytes(d: int) -> int:
    return 4 * 3 * d  # read g, read and write x (gradients come from x, O(d) each)


#: The benchmarked methods; ``bytes_rule`` states the roofline's minimal traffic per step.
METHODS: dict[str, Method] = {
    "ef21": Method(
        lambda k: ef21(make(f"top-k:k={k}")),
        EF21TopK,
        lambda n, d, k: 4 * n * d + 8 * n * k + _server_bytes(d),
        "read h (N d), write K values + indices per worker, server x and g (3 d)",
    ),
    "ef_sign": Method(
        lambda k: compressed_sgd(error_feedback(make("scaled-sign"))),
        EFScaledSign,
        lambda n, d, k: 8 * n * d + _server_bytes(d),
        "read and write e (2 N d), server x and g (3 d)",
    ),
    "qsgd": Method(
        lambda k: compressed_sgd(make("qsgd:s=15")),
        QSGD,
        lambda n, d, k: _server_bytes(d),
        "stateless: server x and g (3 d); compute-bound (one random number per coordinate)",
    ),
    "tnq": Method(
        lambda k: compressed_sgd(make("scalar:method=tnq,bits=3")),
        TNQ,
        lambda n, d, k: _server_bytes(d),
        "stateless: server x and g (3 d); compute-bound (one random number per coordinate)",
    ),
}
BASELINES = {name: m.baseline for name, m in METHODS.items()}


def problem(n: int, d: int):
    return tridiagonal_quadratic(n, d, seed=0)


def top_k(d: int) -> int:
    return max(1, d // 100)


# ------------------------------------------------------------------------------ timing


def copy_bandwidth(mbytes: int = 256, repeats: int = 10) -> float:
    """numpy copy bandwidth in bytes/s (read + write counted), best of ``repeats`` (the best
    is the one that had the core to itself when other jobs share it)."""
    src = np.ones(mbytes * 2**20 // 4, F32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


class Timed(NamedTuple):
    rate: float  # steps/s (median of the wall times)
    cpu_per_wall: float  # CPU-seconds per wall-second over all repeats
    cpu_rate: float  # steps per CPU-second (median of the CPU times)
    compile_s: float  # simulator: first call minus one chunk (numpy: 0)


def bench(name, n, d, repeats, steps, engines, check_3pc):
    """Per engine and for numpy: :class:`Timed`. Repeats are interleaved (each engine, then
    numpy, in turn) so that a change of machine load hits all of them alike."""
    meth = METHODS[name]
    prob = problem(n, d)
    k = top_k(d)
    alg = meth.build(k)
    gamma = theory_gamma(alg, prob)
    runs, states, first = {}, {}, {}
    for e in engines:
        st = make_stepper(
            alg,
            prob,
            gamma=gamma,
            key=jax.random.key(0),
            engine=e,
            dtype=np.float32,
            check_3pc=check_3pc,
            diagnostics=False,  # the numpy loop computes no per-step diagnostics
        )
        t0 = time.perf_counter()
        state, _ = st.init()
        state, out = st.advance(state, 1, steps)
        jax.block_until_ready(out)
        first[e] = time.perf_counter() - t0  # compile(init) + compile(chunk) + init + chunk
        runs[e], states[e] = st, state
    ref = meth.baseline(prob, gamma, k)
    ref.advance(1)  # warm the buffers
    wall = {s: [] for s in [*engines, "numpy"]}
    cpu = {s: [] for s in wall}
    t = 1 + steps
    for _ in range(repeats):
        for e in engines:
            w0, c0 = time.perf_counter(), time.process_time()
            states[e], out = runs[e].advance(states[e], t, steps)
            jax.block_until_ready(out)
            wall[e].append(time.perf_counter() - w0)
            cpu[e].append(time.process_time() - c0)
        t += steps
        w0, c0 = time.perf_counter(), time.process_time()
        ref.advance(steps)
        wall["numpy"].append(time.perf_counter() - w0)
        cpu["numpy"].append(time.process_time() - c0)
    out = {}
    for s in wall:
        rate = steps / float(np.median(wall[s]))
        comp = max(first[s] - steps / rate, 0.0) if s in first else 0.0
        cpu_rate = steps / max(float(np.median(cpu[s])), 1e-9)
        out[s] = Timed(rate, sum(cpu[s]) / sum(wall[s]), cpu_rate, comp)
    return out


def _fmt_dim(d: int) -> str:
    e = round(np.log10(d))
    return f"1e{e}" if 10**e == d else str(d)


def _fmt_rate(r: float) -> str:
    return f"{r:.3g}" if r < 100 else f"{r:.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="first", help="core id, 'first' (default) or 'all'")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--engines",
        default=DEFAULT_ENGINE,
        help=f"simulator engines, comma-separated (default: {DEFAULT_ENGINE}, the simulator's)",
    )
    ap.add_argument("--sizes", default=None, help="N:d list (default: N 8,32,128 x d 1e5,1e6)")
    ap.add_argument("--3pc-check", dest="check_3pc", action="store_true", help="record it too")
    ap.add_argument("--budget", type=float, default=4e8, help="steps ~ budget / (N d)")
    args = ap.parse_args(argv)
    sizes = [(n, d) for n in (8, 32, 128) for d in (100_000, 1_000_000)]
    if args.sizes:
        sizes = [tuple(int(float(v)) for v in item.split(":")) for item in args.sizes.split(",")]
    engines = args.engines.split(",")
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; allowed: {list(METHODS)}")
    pinned = globals()["_PINNED"] if "_PINNED" in globals() else _pin(args.cores)
    bw = copy_bandwidth()
    load = os.getloadavg()
    xla = os.environ.get("XLA_FLAGS", "default (thread pool)")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; jax {jax.__version__}, "
        f"numpy {np.__version__}; {pinned}; XLA_FLAGS: {xla}; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; numpy copy bandwidth {bw / 1e9:.1f} GB/s; "
        f"float32, diagnostics off, 3PC check {'on' if args.check_3pc else 'off'}\n"
    )
    head = "| method | N | d | numpy st/s | CPU/wall | roofline |"
    rule = "|---|---|---|---|---|---|"
    for e in engines:
        head += f" `{e}` st/s | CPU/wall | roofline | ratio | CPU ratio | compile |"
        rule += "---|---|---|---|---|---|"
    print(head)
    print(rule, flush=True)
    for name in methods:
        for n, d in sizes:
            steps = int(np.clip(args.budget / (n * d), 3, 200))
            res = bench(name, n, d, args.repeats, steps, engines, args.check_3pc)
            mb = METHODS[name].min_bytes(n, d, top_k(d))
            ref = res["numpy"]
            line = (
                f"| {name} | {n} | {_fmt_dim(d)} | {_fmt_rate(ref.rate)} | {ref.cpu_per_wall:.2f} | "
                f"{mb * ref.rate / bw:.3f} |"
            )
            for e in engines:
                r = res[e]
                line += (
                    f" {_fmt_rate(r.rate)} | {r.cpu_per_wall:.2f} | {mb * r.rate / bw:.3f} | "
                    f"**{r.rate / ref.rate:.2f}** | {r.cpu_rate / ref.cpu_rate:.2f} | "
                    f"{r.compile_s:.1f} s |"
                )
            print(line, flush=True)
    print("\nMinimal bytes per step (roofline numerator, 4 bytes per float32):")
    for name in methods:
        print(f"- {name}: {METHODS[name].bytes_rule}")


if __name__ == "__main__":
    main()
