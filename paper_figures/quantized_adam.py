"""Quantized distributed Adam (SPEC §5, arXiv 2004.14180): 1-bit gradients with and without
error feedback against full-precision Adam, in both modes.

Problem and settings are those of ``ratedist validate --check quantized_adam``
(:mod:`ratedist.validate.adam`): nonconvex logistic regression, ``N = 4`` heterogeneous
workers, ``d = 10``, exact local gradients, ``x_0 = 0``, Adam with optax's defaults at
``lr = 1e-2``, 3000 steps; the 1-bit compressor is the l1 scaled sign (``d`` sign bits plus
one 32-bit scale per message). Deterministic runs (no replicas).

Top row: ``||∇f(x_t)||^2`` per step, against the step (left, mode a; middle, mode b) and
against the cumulative uplink bits of all workers (right, container convention: bit-packed
signs + the scale; full precision sends 32 bits per coordinate). Bottom row: the error-feedback
residual ``mean_i ||e_i||^2`` (mode a: gradient scale; mode b: Adam-direction scale) and the
relative quantization error ``mean_i ||C(v_i) − v_i||^2/||v_i||^2`` of the sent vectors.

Mode (a) (moments on the server): without EF the iterates stop at a point where the mean of
the workers' scaled signs vanishes, not the gradient; EF removes that bias and its remaining
oscillation shrinks with the learning rate. Mode (b) (moments on every worker): even at full
precision the mean of the workers' Adam directions has zeros that are not stationary points
of ``f`` (``docs/theory/quantized_adam.md`` §3), so all three curves share a floor.

Run: ``python3 paper_figures/quantized_adam.py`` (writes quantized_adam.png beside itself;
about 30 s on 2 CPU cores).
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

from ratedist.compressors import make  # noqa: E402
from ratedist.sim import run  # noqa: E402
from ratedist.sim.qadam import quantized_adam  # noqa: E402
from ratedist.validate import adam as check  # noqa: E402

OUT = pathlib.Path(__file__).with_suffix(".png")
LR = check.LRS[0]
STEPS = check.STEPS
#: y-axis floor of the gradient panels: full-precision mode (a) goes on to round-off
Y_MIN = 1e-12
METHODS = {  # label: (compressor spec, error feedback, colour, z-order)
    "1-bit, EF": (check.ONE_BIT, True, "tab:blue", 2),
    "1-bit, no EF": (check.ONE_BIT, False, "tab:red", 2),
    # dashed and on top: in mode (b) it coincides with the EF curve, which shows in the gaps
    "full precision": ("identity", True, "k", 3),
}
MODES = {"server": "mode (a): moments on the server", "worker": "mode (b): moments on each worker"}


def simulate(problem, key):
    out = {}
    for mode in MODES:
        for label, (spec, ef, _, _) in METHODS.items():
            rnd = quantized_adam(mode, make(spec), error_feedback=ef)
            out[mode, label] = run(rnd, problem, steps=STEPS, key=key, gamma=LR, check_3pc=False)
    return out


def main() -> int:
    t0 = time.perf_counter()
    problem = check.logistic_problem(0)
    traces = simulate(problem, jax.random.key(0))
    fig = plt.figure(figsize=(14, 7.2), constrained_layout=True)
    grid = fig.add_gridspec(2, 3, height_ratios=[2.2, 1])
    top = [fig.add_subplot(grid[0, i]) for i in range(3)]
    bottom = [fig.add_subplot(grid[1, i]) for i in range(3)]
    steps = np.arange(STEPS + 1)
    report = []
    for j, (mode, title) in enumerate(MODES.items()):
        ax = top[j]
        for label, (_, _, color, z) in METHODS.items():
            tr = traces[mode, label]
            g2 = np.maximum(np.asarray(tr.grad_norm_sq), Y_MIN * 1e-3)
            ls = (0, (4, 3)) if label == "full precision" else "-"
            ax.plot(steps, g2, color=color, ls=ls, lw=0.9, label=label, zorder=z)
            bits = tr.uplink_total()
            style = "-" if mode == "server" else ":"
            top[2].plot(bits, g2, color=color, ls=style, lw=1.0, zorder=z)
            tail = float(check._tail(np.asarray(tr.grad_norm_sq)))
            report.append((mode, label, tail, float(bits[-1])))
        ax.set_yscale("log")
        ax.set_ylim(Y_MIN, 1.0)
        ax.set_xlim(0, STEPS)
        ax.set_xlabel("step t")
        ax.set_ylabel(r"$\|\nabla f(x_t)\|^2$")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    full_tail = next(r[2] for r in report if r[:2] == ("server", "full precision"))
    top[0].annotate(
        f"full precision continues down\nto {full_tail:.0e} (round-off)",
        xy=(0.97, 0.03),
        xycoords="axes fraction",
        ha="right",
        va="bottom",
        fontsize=8,
    )
    top[1].annotate(
        "EF coincides with full precision; all three\nshare a floor: the mean of the workers'\n"
        "Adam directions vanishes where ∇f does not\n(heterogeneous workers)",
        xy=(0.97, 0.97),
        xycoords="axes fraction",
        ha="right",
        va="top",
        fontsize=8,
    )
    top[0].legend(loc="upper right", fontsize=9, frameon=False)
    ax = top[2]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(Y_MIN, 1.0)
    ax.set_xlabel("uplink bits, all workers (container)")
    ax.set_ylabel(r"$\|\nabla f(x_t)\|^2$")
    ax.set_title("against bits (solid: mode a, dotted: mode b)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    for j, mode in enumerate(MODES):
        tr = traces[mode, "1-bit, EF"]
        # from t = 1: the residual is 0 before the first message
        bottom[j].plot(steps[1:], np.asarray(tr.ef_norm_sq)[1:], color="tab:blue", lw=0.9)
        bottom[j].set_yscale("log")
        bottom[j].set_xlim(0, STEPS)
        bottom[j].set_xlabel("step t")
        scale = "gradient scale" if mode == "server" else "Adam-direction scale"
        bottom[j].set_ylabel(r"$\frac{1}{N}\sum_i\|e_i\|^2$", fontsize=9)
        bottom[j].set_title(f"EF residual, {MODES[mode].split(':')[0]} ({scale})", fontsize=9)
        bottom[j].grid(True, which="major", alpha=0.3)
    ax = bottom[2]
    for mode in MODES:
        for label in ("1-bit, EF", "1-bit, no EF"):
            q = np.asarray(traces[mode, label].quant_rel_error)
            if not np.any(np.isfinite(q)):
                continue  # mode b without EF records no compression error
            color = METHODS[label][2]
            ax.plot(
                steps,
                q,
                color=color,
                ls="-" if mode == "server" else ":",
                lw=0.8,
                label=f"{label}, mode {'a' if mode == 'server' else 'b'}",
            )
    ax.legend(loc="upper center", fontsize=7, frameon=False, ncol=3)
    ax.set_xlim(0, STEPS)
    ax.set_ylim(0, 1)
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$\|C(v)-v\|^2/\|v\|^2$", fontsize=9)
    ax.set_title("relative quantization error of the sent vectors", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(
        f"Quantized distributed Adam, 1-bit scaled sign (d = {problem.dim}, N = "
        f"{problem.n_workers}, lr = {LR:g}, nonconvex logistic regression)",
        fontsize=11,
    )
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT} ({time.perf_counter() - t0:.1f} s)")
    print(f"{'mode':7s} {'method':15s} {'tail ||grad||^2':>16s} {'uplink bits':>12s}")
    for mode, label, tail, bits in report:
        print(f"{mode:7s} {label:15s} {tail:16.3g} {bits:12.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
