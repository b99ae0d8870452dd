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
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from ratedist.compressors import make
from ratedist.sim import ef21, run, tridiagonal_quadratic

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
    a = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
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


if __name__ == "__main__":
    raise SystemExit(main())
