"""Conditioning of the cyclic repetition code's decoding systems as n and s grow.

For each (n, s) and each of a few seeds of the random matrix H (Tandon et al., Alg. 2), over
the patterns of exactly s stragglers (all of them up to 2000, else 2000 drawn uniformly):
the worst and median condition number of the answering rows B_F, the largest decoding-weight
norm ||a||_2 (the factor by which decoding amplifies independent errors on the workers'
messages, e.g. quantization noise) and the largest residual ||a^T B_F − 1||_inf. Numbers are
the median over seeds of each statistic. Deterministic: no simulation.

Run: ``python3 analysis/gradient_coding_conditioning.py`` (prints a Markdown table).
"""

from __future__ import annotations

import numpy as np

from ratedist.sim.codes import crc, decoding_conditioning

SIZES = [(n, s) for n in (4, 6, 8, 12, 16, 24) for s in (1, 2, 3, 4) if s < n]
SEEDS = range(5)


def main() -> int:
    print("| n | s | patterns | cond max | cond median | max ‖a‖₂ | max residual |")
    print("|---|---|---|---|---|---|---|")
    for n, s in SIZES:
        stats = [decoding_conditioning(crc(n, s, seed=seed, decoder="lstsq")) for seed in SEEDS]
        med = {f: float(np.median([getattr(c, f) for c in stats])) for f in stats[0]._fields}
        print(
            f"| {n} | {s} | {int(med['patterns'])} | {med['cond_max']:.3g} | "
            f"{med['cond_median']:.3g} | {med['weight_norm_max']:.3g} | "
            f"{med['residual_max']:.2g} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
