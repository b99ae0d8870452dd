"""1-bit gradient coding with stragglers (1-bit GC-DL) and its baselines against total uplink
bits.

Every method of ``sim.GC_METHODS`` on two problems of ``sim.equal_bits.EQUAL_BITS_PROBLEMS``
(a convex logistic regression, ``d = 20``, and a 4-8-1 tanh MLP, ``d = 49``, both with full
local gradients) split into k = 8 partitions. The coded methods use the fractional repetition
code with ``s = 1`` on ``n = 8`` workers (4 groups of 2 workers holding the same 2
partitions: the smallest code that tolerates a straggler, and every group is lost only with
probability ``p^2``); the uncoded ones give one partition to each of the 8 workers and
average whoever answered. Workers straggle independently with probability ``p`` at every
step (``p = 0.1``, ``0.3``).

Columns: problem x ``p``. Rows: ``f(x^t) − f*`` (logistic: ``f*`` by L-BFGS-B, the global
minimum; MLP: ``f* = 0``, a lower bound, so the row shows ``f``, which levels off near the
label-noise level ``0.1^2/2 = 0.005``) and ``||∇f(x^t)||^2``,
against the cumulative uplink bits of all workers (``container`` convention: 1 bit per sign,
32 bits per float and per sent norm, nothing from a straggler, the initial messages
included), log-log. The x-range ends at the common budget: the expected bits of 50
full-precision rounds (``sim.equal_bits.full_precision_budget``).

Fair step sizes: each method gets its own best ``gamma`` from the grid
``3^j gamma_0 s_m``, ``j = −6..2``, with ``gamma_0 = 1/lambda_max(∇²f(x^0))`` and ``s_m = 1``,
or ``||∇f(x^0)||/sqrt(d)`` for majority-vote methods (their aggregate is a ±1 vector: the
same first step as GD at ``gamma_0``); "best" = lowest mean ``f − f*`` at the common budget on
4 tuning replicas. The curves are the mean of 8 further replicas (independent of the tuning
ones) at that ``gamma``, each replica read at the last iterate within every bit count on the
axis; the band is ± 1 standard error. All methods share the straggler draws replica by
replica. The protocol is ``ratedist.sim.equal_bits``; ``ratedist validate --check
gc_equal_bits`` runs the same comparison for ``onebit_gc``/``onebit_gc_ef`` vs ``full_gc``.

Run: ``python3 paper_figures/gradient_coding.py`` (writes gradient_coding.png beside itself
and prints the values at the budget; about 150 s of CPU time on 2 CPU cores, most of it
compiling one program per method and problem). Sign-based methods amplify the float rounding
of the CPU reductions, which is not identical from run to run: two runs of this script gave
the MLP's ``ef_signsgd`` 4.95e-3 and 4.91e-3 at the budget (p = 0.1), and can pick
neighbouring grid points for a majority-vote method.
"""

from __future__ import annotations

import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ratedist import sim  # noqa: E402
from ratedist.sim import equal_bits  # noqa: E402

OUT = pathlib.Path(__file__).with_suffix(".png")
CONFIG = equal_bits.EqualBitsConfig()
# coded methods first, then their uncoded baselines (registry order within each)
METHODS = sorted(sim.GC_METHODS.names(), key=lambda m: not sim.GC_METHODS.get(m).coded)
PROBLEMS = equal_bits.EQUAL_BITS_PROBLEMS.names()


def family(name):
    """A coded method and its uncoded baseline share the worker algorithm and the kind of
    server rule (majority vote or a weighted sum): one colour, solid vs dashed."""
    m = sim.GC_METHODS.get(name)
    return m.algorithm().config["algorithm"], m.rule == "majority"


FAMILIES = list(dict.fromkeys(family(m) for m in METHODS))
COLORS = {m: plt.get_cmap("tab10").colors[FAMILIES.index(family(m)) % 10] for m in METHODS}
MARKERS = {m: "osD^vP*Xph"[i % 10] for i, m in enumerate(METHODS)}
METRICS = {
    "f_gap": r"$f(x^t) - f^*$",
    "grad_norm_sq": r"$\|\nabla f(x^t)\|^2$",
}
GRID_POINTS = 160  # bit counts per curve (log-spaced)


def mean_curve(run, i, metric, grid):
    """Mean and SE over the evaluation replicas of the metric at each bit count of ``grid``."""
    bits, vals = run.curves(metric=metric)
    v = equal_bits.value_at_bits(bits[i], vals[i], grid)  # (r_eval, len(grid))
    ok = np.isfinite(v).all(axis=0)  # every replica has spent that many bits (no mixing)
    m = np.where(ok, np.where(np.isfinite(v), v, 0.0).mean(axis=0), np.nan)
    se = np.where(ok, np.nan_to_num(v).std(axis=0, ddof=1) / np.sqrt(v.shape[0]), np.nan)
    return m, se


def panel(ax, runs, i, metric, grid):
    for j, (name, run) in enumerate(runs.items()):
        m, se = mean_curve(run, i, metric, grid)
        coded = sim.GC_METHODS.get(name).coded
        ax.plot(
            grid,
            m,
            color=COLORS[name],
            ls="-" if coded else "--",
            lw=1.6 if coded else 1.3,
            marker=MARKERS[name],
            ms=4.5,
            markevery=(3 + 2 * j, 18),
            label=name,
        )
        ax.fill_between(grid, m - se, m + se, color=COLORS[name], alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(grid[0], grid[-1])
    ax.grid(True, which="major", alpha=0.3)


def main() -> int:
    t0 = time.perf_counter()
    key = jax.random.key(0)
    allruns = equal_bits.compare_methods(METHODS, PROBLEMS, key, CONFIG)
    fig, axes = plt.subplots(
        2, len(PROBLEMS) * len(CONFIG.ps), figsize=(17, 7.6), constrained_layout=True
    )
    rows = []
    for a, name in enumerate(PROBLEMS):
        runs = allruns[name]
        label = equal_bits.EQUAL_BITS_PROBLEMS.facts(name)["label"]
        for i, p in enumerate(CONFIG.ps):
            col = a * len(CONFIG.ps) + i
            budget = next(iter(runs.values())).budget()[i]
            first = min(np.nanmin(r.curves()[0][i][:, 0]) for r in runs.values())
            grid = np.geomspace(first, budget, GRID_POINTS)
            for r, metric in enumerate(METRICS):
                ax = axes[r, col]
                panel(ax, runs, i, metric, grid)
                if r == 0:
                    ax.set_title(f"{label}\nstragglers p = {p:g}", fontsize=9.5)
                if r == 1:
                    ax.set_xlabel("total uplink bits, all workers (container)")
                if i == 0:  # first column of each problem
                    ax.set_ylabel(
                        equal_bits.EQUAL_BITS_PROBLEMS.facts(name)["loss_label"]
                        if metric == "f_gap"
                        else METRICS[metric]
                    )
            for m, run in runs.items():
                f, g2 = run.at_budget()[i], run.at_budget(metric="grad_norm_sq")[i]
                rows.append(
                    (
                        name,
                        p,
                        m,
                        run.gamma()[i],
                        bool(run.at_edge()[i]),
                        run.steps,
                        run.seconds,
                        *equal_bits.mean_se(f),
                        *equal_bits.mean_se(g2),
                    )
                )
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside right center",
        fontsize=9,
        frameon=False,
        title="solid: coded (FRC s = 1)\ndashed: uncoded\n(stragglers ignored)",
        title_fontsize=8.5,
    )
    fig.suptitle(
        f"Gradient coding with stragglers, n = {CONFIG.n_workers} workers: mean of "
        f"{CONFIG.r_eval} replicas (band ± 1 SE), each method at its best step size for the "
        f"budget of {CONFIG.rounds:g} full-precision rounds (right edge)",
        fontsize=11,
    )
    fig.savefig(OUT, dpi=120)
    print(f"wrote {OUT}")
    print(
        f"{'problem':9s} {'p':>4s} {'method':13s} {'gamma':>8s} edge {'steps':>6s} {'s':>6s} "
        f"{'f-f* at budget':>22s} {'||grad f||^2 at budget':>22s}"
    )
    for name, p, m, g, edge, steps, sec, f, fse, g2, g2se in rows:
        print(
            f"{name:9s} {p:4.1f} {m:13s} {g:8.3g} {'yes' if edge else 'no':4s} {steps:6d} "
            f"{sec:6.1f} {f:12.4g} ± {fse:7.2g} {g2:12.4g} ± {g2se:7.2g}"
        )
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
