"""Convergence of 3PC methods, MARINA and GD against bits per worker, with their bounds.

Two panels: the tridiagonal quadratic (n = 10, d = 100) and the nonconvex-regularised
logistic regression (synthetic data, n = 20, d = 20). Every method runs at its theoretical
step size ``gamma = 1/M1`` (``M1 = L_- + L_+ sqrt(B/A)``) from ``g_i^0 = ∇f_i(x^0)``. Solid:
the simulated running average ``(1/T) sum_{t<T} ||∇f(x^t)||^2`` (mean of replicas for the
randomised methods) against the bits one worker has sent after T steps (``container``
convention: bit-packed values + indices + flags + full 32-bit vectors, including the initial
``g_i^0``). Dashed, same colour: the bound ``2 Delta0/(gamma T) + E[G^0]/(A T)`` of the 3PC
theorem (MARINA: Thm 2.1 of arXiv 2102.07845) at the same T.

Logistic panel: ``Delta0 = f(x^0) - 0`` (0 is a valid lower bound of f; the L-BFGS value of f*
is only a local minimum) and ``L_-``, ``L_+`` are the library's upper bounds (labelled so in
the problem).

Run: ``python3 paper_figures/convergence_3pc.py`` (writes convergence_3pc.png beside itself;
a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import pathlib
import sys

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ratedist import bounds, sim  # noqa: E402

OUT = pathlib.Path(__file__).with_suffix(".png")
#: the suite's methods (registry fact ``suite``), with the registry's example zeta and p
METHODS = [n for n in sim.ALGORITHMS.names() if sim.ALGORITHMS.facts(n)["suite"]]
COLORS = {m: plt.get_cmap("tab10").colors[i % 10] for i, m in enumerate(METHODS)}
# EF21, CLAG and 3PCv2 nearly coincide here (CLAG's trigger almost always fires): markers
# with staggered offsets keep every curve identifiable
MARKERS = {m: "osv^DPX*<>ph"[i % 12] for i, m in enumerate(METHODS)}
REPLICAS = 8  # randomised methods: mean of this many independent runs
STEPS = 6000  # every curve then spans the bit budget (GD sends 32 d bits per step)


def setups(k):
    """Each suite method with Top-K(k) / unbiased Rand-K(k) (``sim.example_algorithm``)."""
    return {name: sim.example_algorithm(name, k=k) for name in METHODS}


def curves(problem, alg, steps, delta0_of, key):
    reps = None if alg.deterministic else REPLICAS
    tr = sim.run(alg, problem, steps=steps, key=key, replicas=reps)
    g2 = np.atleast_2d(tr.grad_norm_sq)[:, :-1]
    avg = np.mean(np.cumsum(g2, axis=1) / np.arange(1, g2.shape[1] + 1), axis=0)
    # bits after T steps = messages forming g^0..g^T, i.e. entry T of the cumulative count
    bits = np.atleast_3d(tr.bits.container.reshape((-1, *tr.bits.container.shape[-2:])))
    bits_T = np.mean(bits, axis=(0, 2))[1:]
    A, B = alg.constants(problem.dim, problem.n_workers)
    err0 = tr.server_error if alg.lyapunov == "server" else tr.G
    b = bounds.three_pc_bound(
        delta0=delta0_of(tr),
        L_minus=problem.L_minus,
        L_plus=problem.L_plus,
        A=A,
        B=B,
        G0=float(np.mean(np.atleast_2d(err0)[:, 0])),
        gamma=tr.gamma,
    )
    T = np.arange(1, avg.size + 1)
    ok = bool(np.all(avg <= b(T) * (1 + 1e-9)))
    return bits_T, avg, b(T), ok, tr.gamma


def panel(ax, problem, k, steps, budget, delta0_of, title, key):
    report = []
    algs = setups(k)
    for i, (name, alg) in enumerate(algs.items()):
        bits, avg, bound, ok, gamma = curves(
            problem, alg, steps, delta0_of, jax.random.fold_in(key, i)
        )
        keep = bits <= budget
        label = bounds.THREE_PC.facts(sim.ALGORITHMS.facts(name)["bound"])["label"]
        c = COLORS[name]
        ax.plot(
            bits[keep],
            avg[keep],
            color=c,
            lw=1.6,
            label=label,
            marker=MARKERS[name],
            ms=5,
            markevery=(0.02 + 0.012 * i, 0.12),
        )
        ax.plot(bits[keep], bound[keep], color=c, lw=1.1, ls="--")
        report.append((name, gamma, bits[keep][-1], avg[keep][-1], bound[keep][-1], ok))
    ax.set_yscale("log")
    ax.set_xlim(0, budget)
    ax.set_xlabel("bits sent per worker (container)")
    ax.set_ylabel(r"$\frac{1}{T}\sum_{t<T}\|\nabla f(x^t)\|^2$")
    ax.set_title(title, fontsize=10)
    short = [r[0] for r in report if algs[r[0]].has_trigger and r[2] < 0.95 * budget]
    if short:
        ax.text(
            0.98,
            0.98,
            f"{', '.join(n.upper() for n in short)}: vertical drop = steps without\n"
            "sends once the trigger stops firing",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color=COLORS[short[0]],
        )
    ax.grid(True, which="major", alpha=0.3)
    return report


def main() -> int:
    key = jax.random.key(0)
    quad = sim.tridiagonal_quadratic(10, 100)
    logi = sim.logistic_nonconvex()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    rows = []
    rows += panel(
        axes[0],
        quad,
        10,
        STEPS,
        1.2e6,
        lambda tr: float(np.mean(np.atleast_2d(tr.f_gap)[:, 0])),
        "tridiagonal quadratic (n = 10, d = 100, Top-10, exact $L_\\pm$, $f^*$)",
        jax.random.fold_in(key, 0),
    )
    rows += panel(
        axes[1],
        logi,
        2,
        STEPS,
        3.0e5,
        lambda tr: float(np.mean(np.atleast_2d(tr.f)[:, 0])),  # Delta0 <= f(x0) - 0
        "logistic + nonconvex reg. (n = 20, d = 20, Top-2, bounded $L_\\pm$, $f^* \\geq 0$)",
        jax.random.fold_in(key, 1),
    )
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="0.3", ls="--", lw=1.1))
    labels.append("theory bound (same colour)")
    fig.legend(handles, labels, loc="outside right center", fontsize=9, frameon=False)
    fig.suptitle(
        r"3PC methods at $\gamma = 1/M_1$: simulated average $\|\nabla f\|^2$ (solid) "
        r"vs. the bound $2\Delta_0/(\gamma T) + G^0/(AT)$ (dashed)",
        fontsize=11,
    )
    fig.savefig(OUT, dpi=130)
    print(f"wrote {OUT}")
    print(f"{'method':8s} {'gamma':>10s} {'bits':>10s} {'avg':>11s} {'bound':>11s} holds")
    for name, gamma, b, a, bd, ok in rows:
        print(f"{name:8s} {gamma:10.4g} {b:10.3g} {a:11.4g} {bd:11.4g} {ok}")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
