"""Truncated non-uniform quantization (TNQ, arXiv 2402.01160 / 2402.01798) against the
baselines in distributed training on real data, at 2, 3 and 4 bits per coordinate.

Protocol (``ratedist.gradients.compare``): 4 workers, each with its own minibatch of 32 digits
images per step, compress their gradient (the whole model as one vector), the server averages
and takes a plain SGD step; 200 steps (100 for the CNN), 3 evaluation seeds (initial parameters,
minibatches, compressor randomness). Every compressor runs at the model's common step size and at
the step size tuned for it (grid ``compare.LR_FACTORS`` x the common one: 1, 3, 10, 30, 100 for
the logistic model, 0.3, 1, 3, 10, 30 for the MLP and the CNN; chosen on 3
separate tuning seeds). All compressors of a model train in one program
(``training.train_group``). Budgets
count the ``container`` layer INCLUDING side information (norms, scales, Top-K indices), per
coordinate of one worker's message; each compressor's parameter is matched to the budget
(``compare.budget_table``). TernGrad (2 bits) and scaled sign + EF (1 bit) cannot spend more:
they run below the 3- and 4-bit budgets (dotted lines); natural compression (9 bits) cannot
reach any budget and is drawn in black as an off-budget reference, outside the rankings.

Panels, per model: one per budget, mean full-training-set loss at the COMMON step (± 1 standard
error over seeds, shaded) against the cumulative container bits one worker has sent, in bits
per coordinate (``b`` per step at budget ``b``), log y. The box lists, per compressor, the
predicted ranks (by the normalised error ``E||C(g) − g||^2 / E||g||^2`` on captured minibatch
gradients at the initial parameters, and on draws from the best-AIC model fitted to them), the
measured ranks (by mean final loss at the common and at the tuned step) and those two losses,
with the tuned step (``*``: on an edge of the grid, not bracketed); the title gives Spearman's
rho for the four pairings. Last panel: the ENTROPY layer, final loss at the tuned step against
each compressor's entropy-coded bits per coordinate and step (at the common step), marker =
container budget, open = under or off budget. Many final losses lie within 2 SE of each other:
those measured ranks are not resolved by 3 seeds.

What it shows (table in tnqsgd_training.txt; ``docs/gradients.md`` discusses it). At the common
step, TNQ/TUQ train slowest of the ranked compressors on the logistic model and the MLP (rho
-0.13 to -0.57 from captured gradients): their truncation shrinks the update like a smaller
step. At the tuned step rho turns positive on the logistic model (+0.71, +0.61, +0.32) and the
MLP at 2 bits (+0.64), near zero at 3-4 bits (-0.04, 0.00). On the CNN the prediction does best:
rho +0.45/+0.43/+0.11 at the common step, +0.67/+0.64/+0.57 tuned (fitted model +0.75/+0.75/
+0.54); TNQ is 4th, 3rd, 2nd tuned and beats TUQ at 3-4 bits (within 2 SE). TNQ is first
nowhere: scaled sign + EF (1 bit) leads every cell at the tuned step. Every tuned step of the
logistic model and the MLP is bracketed by its grid; on the CNN 3 of 27 (QSGD, NUQSGD) sit on
its lower edge (0.3x, starred).

Run: ``python3 paper_figures/tnqsgd_training.py`` (writes tnqsgd_training.png and
tnqsgd_training.txt, the results table, beside itself).
"""

from __future__ import annotations

import pathlib
import pickle
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ratedist.gradients import compare, training

OUT = pathlib.Path(__file__).with_suffix(".png")
TABLE = pathlib.Path(__file__).with_suffix(".txt")
MODELS = ("logistic-digits", "mlp-digits", "cnn-digits")
RESULTS = pathlib.Path("/tmp") / "tnqsgd_training_rows.pkl"  # to re-plot without retraining
COLORS = dict(zip(compare.LABELS, plt.get_cmap("tab10").colors, strict=False))
COLORS["natural"] = (0.0, 0.0, 0.0)


RHOS = {
    "captured, common step": ("predicted_rank", "measured_rank"),
    "fitted, common step": ("predicted_rank_fit", "measured_rank"),
    "captured, tuned step": ("predicted_rank", "measured_rank_tuned"),
    "fitted, tuned step": ("predicted_rank_fit", "measured_rank_tuned"),
}


def _lr(r) -> str:
    """The tuned step size, starred where it lies on an edge of the grid (not bracketed)."""
    grid = [training.LEARNING_RATES[r.model] * f for f in compare.LR_FACTORS[r.model]]
    edge = np.isclose(r.tuned_lr, min(grid)) or np.isclose(r.tuned_lr, max(grid))
    return f"{r.tuned_lr:g}{'*' if edge else ''}"


def _rk(v) -> str:
    return "—" if np.isnan(v) else f"{v:g}"


def table(rows, rhos) -> str:
    lines = [
        "| model | bits | compressor | spec | container bits/coord | entropy bits/coord | status "
        "| norm. MSE captured | norm. MSE fitted | final loss ± SE (common step) "
        "| tuned step | final loss ± SE (tuned step) | test acc ± SE (common) "
        "| pred. rank captured | pred. rank fitted | meas. rank common | meas. rank tuned |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.matched
        lines.append(
            f"| {r.model} | {r.bits} | {m.label} | `{m.spec}`{' + EF' if m.error_feedback else ''}"
            f" | {m.bits_per_coord:.3f} | {r.entropy_bits_per_coord:.3f} | {m.status} | "
            f"{r.predicted_mse:.3g} | {r.predicted_mse_fit:.3g} | "
            f"{r.final_loss[0]:.4f} ± {r.final_loss[1]:.4f} | {_lr(r)} | "
            f"{r.final_loss_tuned[0]:.4f} ± {r.final_loss_tuned[1]:.4f} | "
            f"{r.test_accuracy[0]:.3f} ± {r.test_accuracy[1]:.3f} | {_rk(r.predicted_rank)} | "
            f"{_rk(r.predicted_rank_fit)} | {_rk(r.measured_rank)} | {_rk(r.measured_rank_tuned)} |"
        )
    lines.append("")
    lines.append(
        "tuned step: chosen from "
        + "; ".join(
            f"{', '.join(f'{f:g}' for f in compare.LR_FACTORS[m])} ({m})"
            for m in dict.fromkeys(r.model for r in rows)
        )
        + " x the common step on seeds "
        + ", ".join(map(str, compare.TUNING_SEEDS))
        + "; * = on an edge of that grid (the optimum is not bracketed)."
    )
    lines.append("")
    lines.append("| model | bits | " + " | ".join(f"rho {k}" for k in rhos) + " |")
    lines.append("|---|---|" + "---|" * len(rhos))
    for key in next(iter(rhos.values())):
        lines.append(
            f"| {key[0]} | {key[1]} | " + " | ".join(f"{v[key]:+.2f}" for v in rhos.values()) + " |"
        )
    return "\n".join(lines) + "\n"


MARKERS = {2: "o", 3: "s", 4: "^"}


def plot(rows, rhos) -> None:
    budgets = sorted({r.bits for r in rows})
    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(
        len(models),
        len(budgets) + 1,
        figsize=(5.2 * (len(budgets) + 1), 4.6 * len(models)),
        squeeze=False,
    )
    for i, model in enumerate(models):
        for j, b in enumerate(budgets):
            ax = axes[i, j]
            sel = [r for r in rows if r.model == model and r.bits == b]
            d_bits = max(r.matched.bits_per_coord for r in sel if r.matched.status != "off")
            x_max = d_bits * sel[0].curves.steps[-1]
            box = []
            for r in sel:
                c = r.curves
                x = c.steps * r.matched.bits_per_coord  # bits per coordinate sent so far
                mean = c.train_loss.mean(0)
                se = c.train_loss.std(0, ddof=1) / np.sqrt(c.train_loss.shape[0])
                style = {"matched": "-", "under": ":", "off": "--"}[r.matched.status]
                col = COLORS[r.matched.label]
                # TNQ thick, TUQ thin on top of it: their curves nearly coincide
                lw, z = {"TNQ": (3.0, 5), "TUQ": (1.2, 6)}.get(r.matched.label, (1.4, 2))
                keep = x <= x_max * 1.001
                ax.plot(
                    x[keep], mean[keep], style, color=col, lw=lw, zorder=z, label=r.matched.label
                )
                ax.fill_between(x[keep], (mean - se)[keep], (mean + se)[keep], color=col, alpha=0.2)
                if r.matched.status != "off":
                    box.append(
                        f"{r.matched.label[:12]:<12s}{r.predicted_rank:>4g}"
                        f"{r.predicted_rank_fit:>4g}{r.measured_rank:>4g}"
                        f"{r.measured_rank_tuned:>4g} {r.final_loss[0]:.3f} {r.final_loss_tuned[0]:.3f}"
                        f"@{_lr(r)}"
                    )
            ax.set_yscale("log")
            ax.set_xlim(0, x_max)
            ax.set_title(
                f"{model}, {b} bits/coord, common step\nρ captured/fitted: "
                f"common {rhos['captured, common step'][model, b]:+.2f}/"
                f"{rhos['fitted, common step'][model, b]:+.2f}, "
                f"tuned {rhos['captured, tuned step'][model, b]:+.2f}/"
                f"{rhos['fitted, tuned step'][model, b]:+.2f}",
                fontsize=9,
            )
            ax.set_xlabel("cumulative container bits per coordinate, one worker")
            ax.set_ylabel("training loss (full train split)")
            ax.text(
                0.98,
                0.97,
                "rank        pred pred meas meas  loss  loss\n"
                "            capt  fit comm tune  comm  tuned@lr\n" + "\n".join(box),
                transform=ax.transAxes,
                ha="right",
                va="top",
                multialignment="left",
                family="monospace",
                fontsize=6.5,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
            )
            ax.grid(alpha=0.3, which="both")
        # entropy layer: final loss at the tuned step against entropy-coded bits per coordinate
        ax = axes[i, -1]
        for r in rows:
            if r.model != model:
                continue
            ax.errorbar(
                r.entropy_bits_per_coord,
                r.final_loss_tuned[0],
                yerr=r.final_loss_tuned[1],
                marker=MARKERS.get(r.bits, "o"),
                color=COLORS[r.matched.label],
                mfc="none" if r.matched.status != "matched" else COLORS[r.matched.label],
                ms=6,
                lw=1,
            )
        for b, mk in MARKERS.items():
            ax.plot([], [], mk, color="0.4", label=f"{b}-bit container budget")
        ax.plot([], [], "o", mfc="none", color="0.4", label="open: under/off budget")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("entropy-coded bits per coordinate per step, one worker")
        ax.set_ylabel("final training loss at the tuned step (± SE)")
        ax.set_title(f"{model}: entropy layer (tuned steps)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(
        "Compressed distributed SGD (4 workers, 3 evaluation seeds, ± 1 SE) at equal container bits "
        "incl. side information; dotted: below budget, black dashed: natural (9 bits, off budget)\n"
        "ranks predicted by normalised MSE on captured gradients and on the fitted model; measured "
        "by final loss at the common step and at the step tuned on 3 other seeds "
        "(@lr: tuned step, * on the grid's edge; ranks whose losses differ by < 2 SE are not "
        "resolved)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.965 if len(models) > 2 else 0.94))
    fig.savefig(OUT, dpi=110)
    plt.close(fig)


def main() -> int:
    t0 = time.perf_counter()
    if "--replot" in sys.argv:
        rows, seconds = pickle.loads(RESULTS.read_bytes())
    else:
        rows = compare.run_comparison(MODELS, compare.BUDGETS, log=print)
        seconds = time.perf_counter() - t0
        RESULTS.write_bytes(pickle.dumps((rows, seconds)))
    rhos = {k: compare.rank_correlations(rows, *v) for k, v in RHOS.items()}
    plot(rows, rhos)
    TABLE.write_text(table(rows, rhos) + f"\nrun time {seconds:.0f} s (2 shared CPU cores)\n")
    print(table(rows, rhos))
    print(f"wrote {OUT} and {TABLE} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
