"""RD figure: every compressor against Shannon's D(R) on Gaussian gradients, d = 1000.

Left panel: container layer (bit-packed wire size); right panel: entropy layer (ideal
entropy-coded size). Filled markers: closed forms (exact at d = 1000 except the RMS-normalized
scalar designs and the lattices, which are large-d / high-rate); open markers: Monte Carlo of
the JAX compressors (±2 SE; lattice entropy rates from labels pooled over the trials,
Miller–Madow). Lines: each compressor's lower convex envelope in the linear (R, D) plane (time
sharing). Side information (norms, scales, 32-bit floats) is charged in both. Points beyond
8.5 bits are listed on the figure (``ratedist.plotting.rd_figure``).

Run:  python paper_figures/rd_gaussian.py   (writes paper_figures/rd_gaussian.{png,pdf})
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np

from ratedist.compressors import COMPRESSORS
from ratedist.plotting import default_label, rd_figure
from ratedist.quantizers import DESIGNS
from ratedist.rd import (
    RDPoint,
    closed_form,
    closed_form_point,
    curve_specs,
    default_specs,
    design_point,
    rd_point,
)

D = 1000
TRIALS = 48
SEED = 0
OUT = Path(__file__).with_suffix("")
#: Monte Carlo markers for every registered compressor that has a closed form, except those
#: whose randomness is shared across workers (one vector says nothing about them here)
MC_COMPRESSORS = [n for n in COMPRESSORS.names() if not COMPRESSORS.facts(n).get("shared")]


#: design-time quantizers: bits 1..8 (fixed rate) or entropy targets 1..6 bits (entropy-coded)
FIXED_BITS = range(1, 9)
ENTROPY_BITS = range(1, 7)


def curve_point(spec: str, key) -> RDPoint:
    """The closed form, or Monte Carlo (16 trials) where the container rate has none
    (lattice label ranges)."""
    if closed_form(spec, D).rate_bits is None:
        return rd_point(spec, D, trials=16, key=key)
    return closed_form_point(spec, D)


def design_points() -> list:
    """Every registered design method (``ratedist.quantizers.DESIGNS``) as (R, D) points."""
    points = []
    for method in DESIGNS.names():
        if DESIGNS.facts(method).get("rate") == "entropy":
            points += [
                design_point(method, 2 ** (r + 3) + 1, D, entropy_bits=float(r))
                for r in ENTROPY_BITS
            ]
            continue
        for b in FIXED_BITS:
            try:
                points.append(design_point(method, 2**b, D))
            except ValueError as exc:  # e.g. a truncated design needs >= 2 intervals
                print(f"  {method} at {b} bit(s) skipped: {exc}")
    return points


def main() -> int:
    t0 = time.time()
    key = jax.random.key(SEED)
    # closed-form curves and Monte Carlo markers of every registered compressor: its
    # rd_curve / rd_sweep facts (ratedist.rd.curve_specs / default_specs)
    curve = [s for specs in curve_specs().values() for s in specs]
    points = [curve_point(s, jax.random.fold_in(key, 10_000 + i)) for i, s in enumerate(curve)]
    mc = [s for name, specs in default_specs().items() if name in MC_COMPRESSORS for s in specs]
    for i, spec in enumerate(mc):
        points.append(
            rd_point(spec, D, trials=TRIALS, key=jax.random.fold_in(key, i))._replace(
                distortion=None
            )
        )
    points += design_points()
    t_compute = time.time() - t0

    fig = rd_figure(
        points,
        layers=("container", "entropy"),
        rate_cap=8.5,
        title=f"Compressors on Gaussian gradients, d = {D}: normalized distortion vs bits per "
        "coordinate (side information included)",
    )
    for ext in ("png", "pdf"):
        fig.savefig(OUT.with_suffix(f".{ext}"), dpi=130)
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
