"""A step-size sweep as ONE vmapped program, against separate runs, measured in one process.

The simulator takes the step size (and every other scalar hyperparameter) as an input of the
compiled program, so

* ``recompile``: 16 runs, each of a freshly built algorithm object — every run compiles its
  own program (what every step size cost when gamma was a constant of the program);
* ``separate``: 16 runs of one algorithm object with 16 step sizes — one compilation;
* ``vmapped``: ``run(..., gamma=array_of_16)`` — one compilation, one program for all 16.

Prints compilations (XLA backend compiles counted with ``jax.monitoring``), wall and CPU
seconds of each, for EF21-Top-K on the tridiagonal quadratic. The process is pinned to one
core (``os.sched_setaffinity``) so wall and CPU time compare like with like.

Usage: ``python benchmarks/bench_sweep.py [--points 16] [--steps 2000] [--n 10] [--d 1000]``

With ``--table N``: the cost of a result directory of N runs instead — writing N result
files (:func:`ratedist.sim.store.save_trace`, reproducible bytes, against the same with a
plain ``np.savez``, as before) and reading them back as one table (:mod:`ratedist.sim.results`: final
rows, and every 10th step). The N files hold one EF21 trace under N configs (``--steps``,
``--n``, ``--d`` size it). Medians of 3 repetitions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from ratedist.compressors import make
from ratedist.sim import ef21, run, store, tridiagonal_quadratic
from ratedist.sim.results import load_results, results_columns
from ratedist.sim.store import save_trace

jax.config.update("jax_enable_x64", True)

_COMPILES: list[float] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: (
        _COMPILES.append(secs) if name == "/jax/core/compile/backend_compile_duration" else None
    )
)


def timed(fn):
    c0, w0, p0 = len(_COMPILES), time.perf_counter(), time.process_time()
    out = fn()
    return out, len(_COMPILES) - c0, time.perf_counter() - w0, time.process_time() - p0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--table", type=int, default=0, metavar="N", help="time N result files")
    a = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    if a.table:
        return table(a)
    prob = tridiagonal_quadratic(a.n, a.d, seed=0)
    gammas = np.geomspace(1e-3, 3e-2, a.points)
    key = jax.random.key(0)
    spec = f"top-k:k={max(1, a.d // 100)}"

    def recompile():
        return [run(ef21(make(spec)), prob, steps=a.steps, key=key, gamma=g) for g in gammas]

    alg = ef21(make(spec))

    def separate():
        return [run(alg, prob, steps=a.steps, key=key, gamma=g) for g in gammas]

    def vmapped():
        return run(ef21(make(spec)), prob, steps=a.steps, key=key, gamma=gammas)

    rows = [
        (name, *timed(fn)[1:])
        for name, fn in [("recompile", recompile), ("separate", separate), ("vmapped", vmapped)]
    ]
    print(f"EF21 {spec}, tridiagonal n={a.n} d={a.d}, {a.points} step sizes x {a.steps} steps")
    print(f"{'mode':10s} {'compiles':>8s} {'wall s':>8s} {'cpu s':>8s} {'vs recompile':>13s}")
    for name, nc, wall, cpu in rows:
        print(f"{name:10s} {nc:8d} {wall:8.2f} {cpu:8.2f} {rows[0][2] / wall:12.2f}x")
    return 0


def plain_savez(d, trace, configs):
    """``save_trace`` as it was before result bytes were made reproducible (``np.savez``
    stamps the time of writing), into files named ``raw<i>.npz`` that are removed after."""
    keep = store._savez_reproducible
    store._savez_reproducible = lambda fh, arrays: np.savez(fh, **arrays)
    try:
        for i, c in enumerate(configs):
            save_trace(d / f"raw{i}.npz", trace, c)
    finally:
        store._savez_reproducible = keep
        for p in d.glob("raw*.npz"):
            p.unlink()


def table(a) -> int:
    """Write ``a.table`` result files, then read them back as one table (see the docstring)."""
    prob = tridiagonal_quadratic(a.n, a.d, seed=0)
    spec = f"top-k:k={max(1, a.d // 100)}"
    trace = run(ef21(make(spec)), prob, steps=a.steps, key=jax.random.key(0), gamma=1e-2)
    configs = [
        {"algorithm": {"name": "ef21", "compressor": spec}, "seed": i} for i in range(a.table)
    ]

    def med(fn):
        times = []
        for _ in range(3):
            w0, p0 = time.perf_counter(), time.process_time()
            fn()
            times.append((time.perf_counter() - w0, time.process_time() - p0))
        return statistics.median(w for w, _ in times), statistics.median(c for _, c in times)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        size = save_trace(d / "probe.npz", trace, configs[0]).stat().st_size
        (d / "probe.npz").unlink()
        rows = [
            (
                "save_trace (reproducible bytes)",
                med(lambda: [save_trace(d / f"{i}.npz", trace, c) for i, c in enumerate(configs)]),
            ),
            ("save_trace, plain np.savez", med(lambda: plain_savez(d, trace, configs))),
        ]
        rows += [
            ("results_columns, final rows", med(lambda: results_columns(d))),
            ("load_results, final rows", med(lambda: load_results(d))),
            ("load_results, every 10th step", med(lambda: load_results(d, steps="all", every=10))),
        ]
    print(
        f"{a.table} result files of EF21 {spec}, n={a.n} d={a.d}, {a.steps} steps "
        f"({size / 1e3:.0f} kB each)"
    )
    print(f"{'operation':32s} {'wall s':>8s} {'cpu s':>8s}")
    for name, (wall, cpu) in rows:
        print(f"{name:32s} {wall:8.2f} {cpu:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
