"""Optimal truncation threshold alpha* and MSE against bits, closed form vs exact optimum.

Clipping to ``[-alpha, alpha]`` followed by unbiased stochastic rounding onto ``2^b`` levels
(``s = 2^b - 1`` intervals; TNQ: levels with density ``∝ p^(1/3)``, TUQ: uniform levels;
``ratedist.quantizers.optimal_truncation``), for four unit-variance sources: Gaussian,
Laplace, Student-t (df 5) and the power law (double Lomax, tail index 5).

* solid lines: ``alpha*`` minimising the papers' bound (``objective="bound"``): closed form
  for Laplace (TNQ ``3 gamma log(1 + 2s/(3 sqrt 6))``, TUQ ``gamma W0(s^2)``) and the power law
  (TNQ), the root of a closed-form derivative for the Gaussian and the power law (TUQ), and of
  a quadrature derivative for Student-t (no closed form);
* markers: ``alpha*`` minimising the exact MSE (``objective="exact"``);
* bottom row: the exact MSE (dB, per unit variance) of both designs, and the bound's value at
  its minimiser (dotted); the bound lies above the exact MSE of its own design.

Run:  python paper_figures/truncation_threshold.py   (writes truncation_threshold.{png,pdf})
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ratedist.quantizers import optimal_truncation
from ratedist.sources import Gaussian, Laplace, PowerLaw, StudentT

BITS = np.arange(1, 9)
OUT = Path(__file__).with_suffix("")
SOURCES = {
    "Gaussian": Gaussian(1.0),
    "Laplace": Laplace(1 / math.sqrt(2)),
    "Student-t (df 5)": StudentT(5.0, math.sqrt(3 / 5)),
    "power law (tail 5)": PowerLaw(5.0, math.sqrt(6.0)),
}
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]


def db(v: float) -> float:
    return 10 * math.log10(v)


def main() -> int:
    t0 = time.time()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.2), sharex=True)
    for col, (levels, label) in enumerate((("nonuniform", "TNQ"), ("uniform", "TUQ"))):
        for (name, src), color in zip(SOURCES.items(), COLORS, strict=True):
            assert abs(src.variance() - 1) < 1e-9, name
            rows = []
            for b in BITS:
                s = int(2**b - 1)
                bd = optimal_truncation(src, s, levels=levels, objective="bound")
                ex = optimal_truncation(src, s, levels=levels, objective="exact")
                rows.append((bd.alpha, ex.alpha, bd.exact.mse, ex.exact.mse, bd.bound_mse))
            a_b, a_e, m_b, m_e, bound = np.array(rows).T
            print(f"{label} {name:18s} alpha* bound {np.round(a_b, 3)}  exact {np.round(a_e, 3)}")
            ax = axes[0, col]
            ax.plot(BITS, a_b, "-", color=color, label=name)
            ax.plot(BITS, a_e, "o", color=color, mfc="none")
            ax = axes[1, col]
            ax.plot(BITS, [db(v) for v in m_b], "-", color=color)
            ax.plot(BITS, [db(v) for v in m_e], "o", color=color, mfc="none")
            ax.plot(BITS, [db(v) for v in bound], ":", color=color, lw=1)
        axes[0, col].set_title(f"{label} ({levels} levels, 2^b levels on [-alpha, alpha])")
        axes[0, col].set_ylabel("alpha* (units of the standard deviation)")
        axes[0, col].set_yscale("log")
        axes[1, col].set_ylabel("MSE per unit variance (dB)")
        axes[1, col].set_xlabel("bits per coordinate b")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, title="source (unit variance)", title_fontsize=8)
    styles = [
        plt.Line2D([], [], color="k", ls="-", label="design minimising the bound"),
        plt.Line2D([], [], color="k", ls="", marker="o", mfc="none", label="exact-MSE optimum"),
        plt.Line2D([], [], color="k", ls=":", lw=1, label="the bound (at its minimiser)"),
    ]
    axes[1, 0].legend(handles=styles, fontsize=8)
    axes[0, 1].legend(handles=styles[:2], fontsize=8)
    fig.suptitle(
        "Truncation + unbiased stochastic rounding: optimal threshold and MSE vs bits, "
        "unit-variance sources\nlines: minimiser of the papers' bound (closed form where one "
        "exists); circles: minimiser of the exact MSE; dotted: the bound",
        fontsize=10,
    )
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(OUT.with_suffix(f".{ext}"), dpi=130)
    print(f"{time.time() - t0:.1f} s -> {OUT}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
