"""Throughput of the run-time compressors against numpy copy bandwidth and the memory roofline.

Usage::

    python benchmarks/bench_compressors.py [--quick] [--repeats 5] [--warmup 3]
        [--only NAME ...] [--cpu N | --no-pin] [--multi-thread] [--system-malloc]

For each d, every compressor runs as ``jax.jit(update)`` on one float32 vector, returning
``x_hat`` and the info (the bit counts a simulation records each step; unused, XLA would drop
their computation); the time is the
median of ``--repeats`` calls after ``--warmup`` untimed calls (the first compiles; the others
let the allocator settle) and, while the last of them still page-faulted more than 1 % of its
output, up to 20 more.

Like for like with the copy, which writes into a warm buffer: glibc serves every allocation
of 32 MB or more (the 4 d-byte output at d = 1e7) with a fresh ``mmap`` and returns it on free,
so each call would page-fault its whole output (9766 minor faults, 12–15 ms at d = 1e7, more
than the compressor itself). The script therefore raises glibc's mmap and trim thresholds to
1 GB first (``mallopt``, the same as ``MALLOC_MMAP_THRESHOLD_=1000000000
MALLOC_TRIM_THRESHOLD_=1000000000`` in the environment); ``--system-malloc`` keeps glibc's
defaults. The ``faults`` column shows the median minor page faults of a timed call. Columns:

- ``ratio``: GB/s of float32 input (``4 d / t``) over numpy ``copyto`` GB/s of bytes read, both
  measured in this run (the historical column);
- ``roofline``: the fraction of the memory roofline, ``(minimal bytes the step must move / t)
  / (copy bandwidth)``, where the copy moves ``8 d`` bytes (read + write). The minimal bytes
  are listed per row in ``_configs``: 2 vectors at least, since ``update`` writes a dense
  ``(d,)`` output and its non-finite policy (``x_hat_i = x_i`` where ``x_i`` is NaN or
  ``±inf``) reads every ``x_i``, even for the sparsifiers (until 2026-12-03 the Top-K rows
  counted ``1 + 2 K/d``, without the output's write, and the Rand-K rows ``1 + 18 K/d``,
  without the policy's read); 3 where a reduction needs its own read first (e.g. QSGD: the
  norm, then a read that rounds and a write);
- ``cpu/wall``: process CPU seconds per wall second over the timed calls (1.0 = one busy core;
  below 1 the process waited, e.g. for a shared core);
- ``cpu ms`` and ``roof(cpu)``: the median process CPU time of a call and the roofline fraction
  computed from CPU times (the copy's too). On a shared machine, where the process gets a
  fraction of its core, this is the steadier estimate; it still counts the memory traffic of
  the other jobs against us.
- ``best ms`` and ``roof(best)``: the least wall time of the timed calls and the roofline
  fraction from it against the copy's least wall time (as ``timeit`` reports). On a virtual
  machine whose host is shared, periods in which every call of the same jitted function takes
  up to twice as long come and go (measured: 8.5 ms and 15-17 ms for QSGD at d = 1e7 within
  one loop of 40 calls); interference only adds time, so the best call of each side is the
  like-for-like figure there, the median the typical one.

By default the process is pinned to one core (``os.sched_setaffinity``) and XLA runs
single-threaded, so every row is a single-core row; ``--multi-thread`` keeps XLA's thread pool
(and ``--no-pin`` the whole affinity mask). A second table times the selection of K = d/100
indices: the O(d) threshold sparsifier, the exact ``top_k_abs`` (native kernel on CPU),
``jax.lax.top_k`` and ``np.argpartition``.
"""

from __future__ import annotations

import os
import sys

if "--multi-thread" not in sys.argv:  # before jax is imported
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )

import argparse
import ctypes
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ratedist.compressors import _kernels, make
from ratedist.compressors.select import native_available, top_k_abs


def _configs(d: int) -> list[tuple[str, str, float]]:
    """(label, spec, minimal bytes moved in units of one float32 vector, 4 d bytes)."""
    k = max(1, d // 100)
    out = [
        ("identity", "identity", 2),  # a jitted call returns a fresh buffer: read + write
        ("sign", "sign", 2),  # read, write
        ("scaled-sign", "scaled-sign", 3),  # scale (read), then read + write
        # the sparsifiers' update returns the dense (d,) vector (a write) and its non-finite
        # policy reads every x_i (a read; the selection and the sent values use that read)
        ("top-k 1%", f"top-k:k={k}", 2),
        ("top-k-sign 1%", f"top-k-sign:k={k}", 2),
        ("rand-k 1%", f"rand-k:k={k}", 2),
        ("rand-k-unbiased 1%", f"rand-k-unbiased:k={k}", 2),
        ("threshold 1%", "threshold:kappa=0.01", 3),  # rms (read), then read + write
        ("qsgd s=1", "qsgd:s=1", 3),  # norm (read), then read + write
        ("qsgd s=15", "qsgd:s=15", 3),
        ("qsgd s=15 rng8", "qsgd:s=15,rng_bits=8", 3),
        ("qsgd s=15 rng16", "qsgd:s=15,rng_bits=16", 3),
        ("nuqsgd s=3", "nuqsgd:s=3", 3),
        ("nuqsgd s=3 rng8", "nuqsgd:s=3,rng_bits=8", 3),
        ("terngrad", "terngrad", 3),  # max (read), then read + write
        ("terngrad rng8", "terngrad:rng_bits=8", 3),
        ("natural", "natural", 2),  # read, write
        ("natural rng8", "natural:rng_bits=8", 2),
        ("scalar lloyd-max 3b", "scalar:method=lloyd-max,bits=3", 3),  # rms, read + write
        ("scalar tnq 3b (stoch.)", "scalar:method=tnq,bits=3", 3),
        ("scalar tnq 3b rng8", "scalar:method=tnq,bits=3,rng_bits=8", 3),
        # grid, stochastic sign and Zⁿ: one kernel pass each; D4/E8: jax.numpy around the
        # native D_n decoder and label entropies (ratedist.compressors._symbols)
        ("grid (stochastic)", "grid:delta=0.5", 2),  # read, write
        ("stochastic-sign l2", "stochastic-sign:scale=l2", 3),  # norm, then read + write
        ("lattice zn dither", "lattice:lattice=zn,dither=True", 3),  # rms, read + write
        ("lattice d4 dither", "lattice:lattice=d4,dither=True", 3),
        ("lattice e8 dither", "lattice:lattice=e8,dither=True", 3),
    ]
    return out


def _steady_allocator() -> bool:
    """Keep large freed blocks in glibc's heap (mmap and trim thresholds 1 GB) and serve every
    thread from the main heap (one arena: a thread's own arena lives in 64 MB heaps that are
    unmapped when emptied, so XLA's 40 MB outputs were re-faulted at every call in some runs);
    before the XLA client (and its threads) exist. False if this C library has no ``mallopt``."""
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # <malloc.h>
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    settings = {m_mmap_threshold: 10**9, m_trim_threshold: 10**9, m_arena_max: 1}
    return all(mallopt(opt, value) == 1 for opt, value in settings.items())


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _warm(fn, calls: int, pages: int) -> None:
    """``calls`` untimed calls, then up to 20 more while the last faulted > 1 % of ``pages``."""
    for i in range(max(calls, 1) + 20):
        f0 = _faults()
        jax.block_until_ready(fn())
        if i + 1 >= max(calls, 1) and _faults() - f0 <= pages // 100:
            return


def _median_time(fn, repeats: int) -> float:
    return _timed(fn, repeats)[0]


def _timed(fn, repeats: int) -> tuple[float, float, float]:
    """Median wall seconds and median process CPU seconds of ``repeats`` calls, and CPU s /
    wall s over all of them."""
    return _timed_faults(fn, repeats)[:3]


def _timed_faults(fn, repeats: int) -> tuple[float, float, float, float, float]:
    """:func:`_timed`, the median minor page faults of a call and the best (least) wall
    seconds."""
    walls, cpus, faults = [], [], []
    for _ in range(repeats):
        f0, c0, t0 = _faults(), time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        faults.append(_faults() - f0)
    return (
        statistics.median(walls),
        statistics.median(cpus),
        sum(cpus) / sum(walls),
        statistics.median(faults),
        min(walls),
    )


def _copy(x_np: np.ndarray, repeats: int) -> tuple[float, float, float]:
    """numpy copy: GB/s of bytes READ (the copy moves twice that), by median wall time, by
    median CPU time and by the best wall time."""
    dst = np.empty_like(x_np)
    np.copyto(dst, x_np)
    wall, cpu, _, _, best = _timed_faults(lambda: np.copyto(dst, x_np), repeats)
    return x_np.nbytes / wall / 1e9, x_np.nbytes / max(cpu, 1e-9) / 1e9, x_np.nbytes / best / 1e9


def _copy_gbs(x_np: np.ndarray, repeats: int) -> float:
    return _copy(x_np, repeats)[0]


def bench(d: int, repeats: int, only: list[str] | None, warmup: int = 3) -> None:
    """One table at size ``d``. The copy is timed before every row and the fastest of those
    samples (median over its calls; CPU and best-call figures likewise) is the run's
    baseline: on a shared host one early sample can fall in a slow stretch and inflate every
    fraction (a run with one sample put the identity at 1.04 of the roofline)."""
    x_np = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    x = jnp.asarray(x_np)
    key = jax.random.key(0)
    samples = [_copy(x_np, max(repeats, 9))]
    rows = []
    for label, spec, vectors in _configs(d):
        if only and not any(o in label for o in only):
            continue
        try:
            comp = make(spec)
        except ValueError as exc:  # e.g. a design method not registered in this checkout
            rows.append((label, f"skipped: {exc}"))
            continue
        state = comp.init(x)
        # x_hat and the info (the bits a run records): an unused info would be dead code
        f = jax.jit(lambda x, s, k, comp=comp: comp.update(x, s, key=k)[::2])
        call = lambda f=f, state=state: f(x, state, key)  # noqa: E731
        _warm(call, warmup, x_np.nbytes // resource.getpagesize())
        samples.append(_copy(x_np, max(repeats, 9)))
        rows.append((label, vectors, *_timed_faults(call, repeats)))
    copy, copy_cpu, copy_best = (max(c) for c in zip(*samples, strict=True))
    print(
        f"\nd = {d:.0e} (float32, {x_np.nbytes / 1e6:.0f} MB); numpy copy {copy:.2f} GB/s read "
        f"({2 * copy:.2f} GB/s moved; by CPU time {copy_cpu:.2f}, best call {copy_best:.2f} GB/s "
        f"read; the fastest of {len(samples)} samples, the slowest "
        f"{min(c[0] for c in samples):.2f}); load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'compressor':<24}{'ms':>9}{'GB/s':>8}{'ratio':>7}{'min bytes':>11}"
        f"{'roofline':>9}{'cpu/wall':>9}{'cpu ms':>9}{'roof(cpu)':>10}{'faults':>8}"
        f"{'best ms':>9}{'roof(best)':>11}"
    )
    for row in rows:
        if len(row) == 2:
            print(f"{row[0]:<24}  {row[1]}")
            continue
        label, vectors, t, cpu, load, faults, best = row
        gbs = x_np.nbytes / t / 1e9
        roof = vectors * x_np.nbytes / t / 1e9 / (2 * copy)
        roof_cpu = vectors * x_np.nbytes / max(cpu, 1e-9) / 1e9 / (2 * copy_cpu)
        roof_best = vectors * x_np.nbytes / best / 1e9 / (2 * copy_best)
        print(
            f"{label:<24}{t * 1e3:>9.2f}{gbs:>8.3f}{gbs / copy:>7.3f}{vectors:>9.2f} v"
            f"{roof:>9.3f}{load:>9.2f}{cpu * 1e3:>9.2f}{roof_cpu:>10.3f}{faults:>8.0f}"
            f"{best * 1e3:>9.2f}{roof_best:>11.3f}"
        )


def bench_selection(d: int, repeats: int) -> None:
    """K = d/100 selection: threshold, exact Top-K (native kernel / lax.top_k), argpartition."""
    x_np = np.random.default_rng(1).standard_normal(d).astype(np.float32)
    x = jnp.asarray(x_np)
    k = d // 100
    thr = make("threshold:kappa=0.01")
    fns = {
        "threshold": jax.jit(lambda x: thr.update(x, ())[0]),
        "top_k_abs": jax.jit(lambda x: top_k_abs(x, k)[1]),
        "lax.top_k": jax.jit(lambda x: jax.lax.top_k(jnp.abs(x), k)[1]),
    }
    res = {}
    for name, f in fns.items():
        jax.block_until_ready(f(x))
        res[name] = _median_time(lambda f=f: f(x), repeats)
    res["np.argpartition"] = _median_time(
        lambda: np.argpartition(np.abs(x_np), d - k)[d - k :], repeats
    )
    base = res["np.argpartition"]
    print(
        f"d = {d:.0e}: "
        + ", ".join(f"{n} {t * 1e3:.3f} ms ({base / t:.2f}x)" for n, t in res.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 1e5 and 1e6 only")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per point (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (>= 1)")
    parser.add_argument("--only", nargs="*", help="substrings of compressor labels to run")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: first)")
    parser.add_argument("--no-pin", action="store_true", help="keep the affinity mask")
    parser.add_argument("--multi-thread", action="store_true", help="keep XLA's thread pool")
    parser.add_argument(
        "--system-malloc", action="store_true", help="keep glibc's mmap/trim thresholds"
    )
    args = parser.parse_args()
    steady = False if args.system_malloc else _steady_allocator()
    if not args.no_pin:
        cpu = min(os.sched_getaffinity(0)) if args.cpu is None else args.cpu
        os.sched_setaffinity(0, {cpu})
    sizes = [10**5, 10**6] if args.quick else [10**6, 10**7]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.device_count()}")
    print(
        f"affinity {sorted(os.sched_getaffinity(0))}, XLA "
        f"{'multi' if args.multi_thread else 'single'}-threaded, native quantizer kernel: "
        f"{_kernels.native_available(jnp.float32)}, allocator "
        f"{'mmap/trim thresholds 1 GB' if steady else 'system defaults'}"
    )
    for d in sizes:
        bench(d, args.repeats, args.only, args.warmup)
    native = "native kernel" if native_available(jnp.float32) else "NO native kernel"
    print(f"\nselection of K = d/100 indices ({native}); (x) = speed over np.argpartition")
    for d in sorted({10**4, 10**5, *sizes}):
        bench_selection(d, args.repeats)


if __name__ == "__main__":
    main()
