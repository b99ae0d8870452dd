"""Per-element time of the native quantizer kernel, without XLA.

Usage::

    python benchmarks/bench_quantize_kernel.py [--cpu 0] [--source PATH/quantize.cc] [MODE]

Compiles ``benchmarks/native/quantize_harness.cc`` (which includes the kernel's source, by
default ``ratedist/_native/quantize.cc``) with the flags of :mod:`ratedist._native`, pins it to
one core and prints ns per element for QSGD (s = 15, 32- and 8-bit draws), TernGrad, a 3-bit
stochastic scalar table (TNQ-like), natural compression, sign, a 3-bit nearest-level table,
Rand-K's keys, the integer-grid rows (grid at delta = 0.5, stochastic and nearest; Z^1 with
dither; their checksum is the entropy in bits) and Rand-K's dense update (k = d/100), d = 1e7,
best of 7 calls. ``--source`` times another version of the kernel (the checksums show whether
two versions give the same outputs). A ``MODE`` name runs that mode only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "native"))
from run_harness import run_harness

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", type=int, default=0, help="core to pin to")
    ap.add_argument("--source", default=str(ROOT / "ratedist" / "_native" / "quantize.cc"))
    ap.add_argument("mode", nargs="?", default=None, help="one mode name, e.g. 'tnq 3b'")
    args = ap.parse_args()
    sys.exit(
        run_harness(
            "quantize_harness.cc",
            "QSRC",
            args.source,
            cpu=args.cpu,
            args=[args.mode] if args.mode else [],
        )
    )


if __name__ == "__main__":
    main()
