"""Time per row of the native Top-K kernel, without XLA.

Usage::

    python benchmarks/bench_select_kernel.py [--cpu 0] [--source PATH/select.cc]
        [--isa avx512|avx2|portable] [CASE]

Compiles ``benchmarks/native/select_harness.cc`` (which includes the kernel's source, by
default ``ratedist/_native/select.cc``) with the flags of :mod:`ratedist._native`, pins it to
one core and prints µs per row and ns per element of the row function ``SelectRow`` on
Gaussian rows (d = 1e4 .. 1e7, K = d/100, and K = 10, d/10 at d = 1e6), float64, and rows
that are hard for its sample bracket (Cauchy, sorted, few distinct values, all equal, a row
whose sample sees only its largest values); best CPU time over the repeats. ``--source``
times another version of the kernel and ``--isa`` caps the intrinsics it is built with
(``avx2``: no AVX-512; ``portable``: none, only the compiler's vectorization); the checksums
of the selected indices show whether two builds agree. A
``CASE`` substring runs the matching cases only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "native"))
from run_harness import run_harness

ROOT = Path(__file__).resolve().parent.parent
#: compiler flags that cap the kernel's intrinsics (the CPU's own support still applies)
ISA_FLAGS = {
    "avx512": [],
    "avx2": ["-DRATEDIST_SELECT_NO_AVX512"],
    "portable": ["-DRATEDIST_SELECT_PORTABLE"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", type=int, default=0, help="core to pin to")
    ap.add_argument("--source", default=str(ROOT / "ratedist" / "_native" / "select.cc"))
    ap.add_argument("--isa", choices=sorted(ISA_FLAGS), default="avx512", help="intrinsics cap")
    ap.add_argument("case", nargs="?", default=None, help="substring of case names")
    args = ap.parse_args()
    sys.exit(
        run_harness(
            "select_harness.cc",
            "SSRC",
            args.source,
            cpu=args.cpu,
            args=[args.case] if args.case else [],
            extra_flags=ISA_FLAGS[args.isa],
            label=f" ({args.isa})",
        )
    )


if __name__ == "__main__":
    main()
