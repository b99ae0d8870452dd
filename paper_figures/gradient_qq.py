"""QQ plots of the fitted gradient models, per layer, for mlp-digits at one step.

Captures the minibatch gradients of ``mlp-digits`` (16 minibatches of 32, Adam 1e-3, seed 0)
at step 100 into a temporary directory, fits every parametric family of
``ratedist.gradients.fit`` to each layer (exact zeros dropped, location 0) and plots, per
layer, the empirical quantiles against each family's quantiles at logit-spaced probabilities
(``Fit.qq``), both axes in units of the layer's RMS; the probabilities reach ``0.5/n`` and
``1 - 0.5/n``, so the outermost points are the sample's extremes. The best family by AIC is drawn thick; the diagonal is a perfect fit. The frame holds the
sample and the best family; a family with heavier tails may leave it (its extreme model
quantiles lie beyond the sample's: it predicts larger values than were seen).

Run:  python paper_figures/gradient_qq.py   (writes paper_figures/gradient_qq.{png,pdf})
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ratedist.gradients import best_fit, capture_gradients, load_capture

MODEL = "mlp-digits"
STEP = 100
OUT = Path(__file__).with_suffix("")
COLORS = {
    "gaussian": "tab:blue",
    "laplace": "tab:orange",
    "student-t": "tab:green",
    "gen-gaussian": "tab:red",
    "power-law": "tab:purple",
}


def main() -> int:
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        capture_gradients(MODEL, [STEP], Path(tmp) / "cap", minibatches=16, batch_size=32, seed=0)
        cap = load_capture(Path(tmp) / "cap")
        layers = list(cap.layers)
        samples = {layer: cap.samples(STEP, layer) for layer in layers}
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 4.4))
    for ax, layer in zip(axes, layers, strict=True):
        x = samples[layer]
        nz = x[x != 0]
        rms = float(np.sqrt(np.mean(nz * nz)))
        bf = best_fit(nz / rms, name=f"layer {layer!r} at step {STEP}")
        lim = 0.0
        for fam, fit in bf.fits.items():
            th, em = fit.qq.theoretical, fit.qq.empirical
            best = fam == bf.best.family
            ax.plot(
                th,
                em,
                "-" if best else "--",
                color=COLORS.get(fam, "k"),
                lw=2.2 if best else 1.0,
                label=f"{fam}{' (best)' if best else ''}  KS {fit.ks:.3f}",
            )
            lim = max(lim, np.abs(em).max(), np.abs(th).max() if best else 0.0)
        lim *= 1.1  # a family with heavier tails than the best one may leave the frame
        ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=0.8, zorder=0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("model quantile (units of layer RMS)")
        ax.set_title(
            f"{layer} {cap.layers[layer]}: n = {nz.size}, {1 - nz.size / x.size:.0%} zeros, "
            f"mean/sd {bf.summary.mean_over_sd:+.2f}",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("empirical quantile (units of layer RMS)")
    fig.suptitle(
        f"{MODEL}, step {STEP}: QQ plots of the fitted gradient models (16 minibatch gradients "
        "of 32, pooled; exact zeros dropped; location 0)",
        fontsize=10,
    )
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(OUT.with_suffix(f".{ext}"), dpi=130)
    print(f"{time.time() - t0:.1f} s -> {OUT}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
