"""Lloyd–Max for 256 Gaussian levels: Newton solve vs the best plain Lloyd a user would write.

Usage::

    python benchmarks/bench_lloyd_max.py [--levels 256] [--tol 1e-12] [--repeats 3]
        [--baseline-max-iter 1000000] [--generic-lloyd-time-limit 0]

The baseline is :func:`numpy_lloyd`: plain Lloyd iteration (centroid / midpoint sweeps) for
``N(0, 1)`` written directly in vectorized numpy, with the closed-form centroids
``(phi(a) - phi(b)) / P(a < X < b)`` (one ``exp`` and two ``ndtr`` calls on the edges per
sweep), no per-call validation and no generic partial-moment machinery. That is the fastest
plain Lloyd we know how to write in numpy; the library's generic :func:`ratedist.quantizers.
lloyd` (any source, validated, partial moments through the source interface) is ≈ 30x slower
per sweep and is shown only when ``--generic-lloyd-time-limit`` is positive.

All methods start from the same companded (``p^(1/3)``) levels and stop on the same criterion
(``max_j |l_j - c_j| / max(std, |l_j|) <= tol``); the process is pinned to one core
(``os.sched_setaffinity``) so that both sides run on the same core, and wall and CPU seconds
are printed side by side. Medians of ``--repeats`` runs; ratios are against the numpy baseline
measured in the same run, the methods alternating within each repeat.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy import special

from ratedist.quantizers import lloyd, lloyd_max
from ratedist.quantizers.companded import companded_levels
from ratedist.quantizers.exact import deterministic_mse
from ratedist.quantizers.lloyd_max import lloyd_residual
from ratedist.sources import Gaussian

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class BaselineResult(NamedTuple):
    """Outcome of :func:`numpy_lloyd`: levels, sweeps used, last step (the criterion)."""

    levels: np.ndarray
    sweeps: int
    residual: float


def numpy_lloyd(levels: Any, *, tol: float = 1e-12, max_iter: int = 1_000_000) -> BaselineResult:
    """Plain Lloyd iteration for the standard Gaussian in vectorized numpy (the baseline).

    One sweep: thresholds at the midpoints of the levels, then every level moved to the
    centroid of its cell, ``E[X | a < X < b] = (phi(a) - phi(b)) / (Phi(b) - Phi(a))``; cells
    on the positive side take their mass from the survival function (``Phi(-a) - Phi(-b)``)
    so that tail cells keep their digits. Levels are symmetrized (``(l - l[::-1]) / 2``) as in
    the library's designers. Stops when a sweep moves no level by more than
    ``tol * max(1, |l_j|)`` (the library's criterion with ``std = 1``).

    Args:
        levels: initial levels, ascending.
        tol: stopping tolerance.
        max_iter: maximum number of sweeps.

    Returns:
        :class:`BaselineResult` (the last step size is the residual).
    """
    lv = np.array(levels, dtype=np.float64)
    edges = np.empty(lv.size + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    residual, sweep = np.inf, 0
    for sweep in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        edges[1:-1] = 0.5 * (lv[:-1] + lv[1:])
        phi = np.exp(-0.5 * edges * edges) * _INV_SQRT_2PI
        below, above = special.ndtr(edges), special.ndtr(-edges)
        lo_pos = edges[:-1] > 0  # cell entirely on the positive side: use survival functions
        mass = np.where(lo_pos, above[:-1] - above[1:], below[1:] - below[:-1])
        new = (phi[:-1] - phi[1:]) / mass
        new = 0.5 * (new - new[::-1])
        residual = float(np.max(np.abs(new - lv) / np.maximum(1.0, np.abs(lv))))
        lv = new
        if residual <= tol:
            break
    return BaselineResult(lv, sweep, residual)


def _pin_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no os.sched_setaffinity)"
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def _time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, float, list[float], Any]]:
    """Per name: median wall s, median CPU s, the wall times, and the last result. The
    methods alternate within each repeat, so that a change of load hits all of them."""
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            outs[name] = fn()
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)
    return {
        k: (statistics.median(walls[k]), statistics.median(cpus[k]), walls[k], outs[k]) for k in fns
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=256)
    parser.add_argument("--tol", type=float, default=1e-12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-max-iter", type=int, default=1_000_000)
    parser.add_argument(
        "--generic-lloyd-time-limit",
        type=float,
        default=0.0,
        help="seconds for one capped run of ratedist.quantizers.lloyd (0: skip)",
    )
    args = parser.parse_args(argv)
    pinned = _pin_one_core()
    src = Gaussian(1.0)
    n, tol = args.levels, args.tol
    start = companded_levels(src, n)

    timed = _time_interleaved(
        {
            "newton": lambda: lloyd_max(src, n, tol=tol),
            "base": lambda: numpy_lloyd(start, tol=tol, max_iter=args.baseline_max_iter),
        },
        args.repeats,
    )
    newton, base = timed["newton"], timed["base"]
    sol, res = newton[3], base[3]
    base_resid = lloyd_residual(src, res.levels)  # the library's criterion on the result
    dl = float(np.max(np.abs(sol.value.levels - res.levels)))
    print(
        f"Gaussian, {n} levels, tol {tol:g} (max |level - centroid| / max(std, |level|)); {pinned}"
    )
    print(f"{'method':<34}{'wall s':>10}{'CPU s':>10}{'iters':>9}{'residual':>10}  ratio")
    print(
        f"{'numpy Lloyd (baseline)':<34}{base[0]:10.4f}{base[1]:10.4f}{res.sweeps:9d}"
        f"{base_resid:10.1e}  1 (per sweep {base[0] / res.sweeps * 1e6:.1f} us)"
    )
    print(
        f"{'lloyd_max (Newton)':<34}{newton[0]:10.4f}{newton[1]:10.4f}{sol.n_iter:9d}"
        f"{sol.residual:10.1e}  {base[0] / newton[0]:.0f}x faster (wall), "
        f"{base[1] / newton[1]:.0f}x (CPU)"
    )
    print(
        f"runs (wall s): baseline {[round(t, 4) for t in base[2]]}, newton "
        f"{[round(t, 4) for t in newton[2]]}"
    )
    print(
        f"max |level difference| {dl:.2e}; mse newton {deterministic_mse(sol.value, src):.15g}, "
        f"baseline {deterministic_mse(type(sol.value).from_levels(res.levels), src):.15g}"
    )
    if args.generic_lloyd_time_limit > 0:
        capped = {
            "generic": lambda: lloyd(src, n, tol=tol, time_limit_s=args.generic_lloyd_time_limit)
        }
        gen = _time_interleaved(capped, 1)["generic"]
        g = gen[3]
        print(
            f"{'ratedist lloyd (generic, capped)':<34}{gen[0]:10.4f}{gen[1]:10.4f}{g.n_iter:9d}"
            f"{g.residual:10.1e}  per sweep {gen[0] / g.n_iter * 1e6:.0f} us "
            f"({gen[0] / g.n_iter / (base[0] / res.sweeps):.0f}x the baseline's)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
