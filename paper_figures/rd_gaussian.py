"""RD figure: every compressor against Shannon's D(R) on Gaussian gradients, d = 1000.

Left panel: container layer (bit-packed wire size); right panel: entropy layer (ideal
entropy-coded size). Lines: closed forms (exact at d = 1000 except the RMS-normalized scalar
designs and the lattices, which are large-d / high-rate); open markers: Monte Carlo of the JAX
compressors (±2 SE). Side information (norms, scales, 32-bit floats) is charged in both.

Run:  python paper_figures/rd_gaussian.py   (writes paper_figures/rd_gaussian.{png,pdf})
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax
import matplotlib.pyplot as plt
import numpy as np

from ratedist.plotting import default_label, plot_rd
from ratedist.rd import closed_form_point, design_point, rd_point

D = 1000
TRIALS = 48
SEED = 0
OUT = Path(__file__).with_suffix("")


def sweeps() -> list[str]:
    """Closed-form curves: several parameters per compressor."""
    ks = [1, 2, 5, 10, 20, 50, 100, 200, 400]
    out = [f"top-k:k={k}" for k in ks]
    out += [f"top-k-sign:k={k}" for k in [*ks, 700, 1000]]
    out += [f"rand-k:k={k}" for k in ks]
    out += [f"rand-k-unbiased:k={k}" for k in [20, 50, 100, 200, 400, 1000]]
    out += [f"threshold:kappa={k}" for k in [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]]
    out += [f"qsgd:s={s}" for s in [1, 2, 4, 8, 16, 32, 64, 128]]
    out += [f"nuqsgd:s={s}" for s in [2, 3, 4, 6, 8]]
    out += ["sign", "scaled-sign", "terngrad", "natural"]
    return out


#: Monte Carlo markers: one or two parameters per compressor.
MC_SPECS = [
    "top-k:k=20",
    "top-k:k=100",
    "top-k-sign:k=100",
    "rand-k:k=20",
    "rand-k-unbiased:k=400",
    "threshold:kappa=0.05",
    "qsgd:s=16",
    "nuqsgd:s=6",
    "sign",
    "scaled-sign",
    "terngrad",
    "natural",
]

DESIGNS = {
    "lloyd-max": range(1, 9),
    "uniform": range(1, 9),
    "tuq": range(1, 9),
    "tnq": range(2, 9),
}


def main() -> int:
    t0 = time.time()
    key = jax.random.key(SEED)
    points = [closed_form_point(s, D) for s in sweeps()]
    for i, spec in enumerate(MC_SPECS):
        points.append(
            rd_point(spec, D, trials=TRIALS, key=jax.random.fold_in(key, i))._replace(
                distortion=None
            )
        )
    for method, bits in DESIGNS.items():
        points += [design_point(method, 2**b, D) for b in bits]
    points += [
        design_point("ecsq", 2 ** (r + 3) + 1, D, entropy_bits=float(r)) for r in range(1, 7)
    ]
    k_lat = jax.random.fold_in(key, 1000)
    for j, lat in enumerate(["zn", "e8"]):
        for step in (1.0, 0.5, 0.25):
            spec = f"lattice:lattice={lat},step={step}"
            points.append(rd_point(spec, D, trials=16, key=jax.random.fold_in(k_lat, j)))
    t_compute = time.time() - t0

    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), sharey=True)
    for ax, layer in zip(axes, ("container", "entropy"), strict=True):
        plot_rd(ax, points, layer=layer, rate_max=8.0, legend=False)
        ax.set_ylim(-32, 22)
        ax.set_title(f"{layer} layer")
    axes[1].set_ylabel("")
    axes[0].text(
        7.9,
        20,
        "off scale: natural (9 bits), identity (32 bits, D = 0)",
        ha="right",
        va="top",
        fontsize="small",
        color="0.3",
    )
    handles, labels = axes[0].get_legend_handles_labels()
    h2, l2 = axes[1].get_legend_handles_labels()
    for h, lab in zip(h2, l2, strict=True):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(
        handles,
        labels,
        loc="center left",
        bbox_to_anchor=(0.83, 0.5),
        fontsize="small",
        title="lines: closed form\nopen markers: Monte Carlo ±2 SE",
        title_fontsize="small",
    )
    fig.suptitle(
        f"Compressors on Gaussian gradients, d = {D}: normalized distortion vs bits per "
        "coordinate (side information included)"
    )
    fig.tight_layout(rect=(0, 0, 0.83, 0.96))
    for ext in ("png", "pdf"):
        fig.savefig(OUT.with_suffix(f".{ext}"), dpi=130)
    plt.close(fig)
    n_mc = sum(p.trials > 0 for p in points)
    print(
        f"{len(points)} points ({n_mc} Monte Carlo), computed in {t_compute:.1f} s, "
        f"total {time.time() - t0:.1f} s -> {OUT}.png"
    )
    gaps: dict[str, list[float]] = {}
    for p in points:
        if p.gap_db is not None:
            gaps.setdefault(default_label(p), []).append(p.gap_db)
    print("min gap to Shannon (dB, container layer):")
    for name, v in sorted(gaps.items()):
        print(f"  {name:24s} {np.min(v):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
