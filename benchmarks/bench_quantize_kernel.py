"""Per-element time of the native quantizer kernel, without XLA.

Usage::

    python benchmarks/bench_quantize_kernel.py [--cpu 0] [--source PATH/quantize.cc] [MODE]

Compiles ``benchmarks/native/quantize_harness.cc`` (which includes the kernel's source, by
default ``ratedist/_native/quantize.cc``) with the flags of :mod:`ratedist._native`, pins it to
one core and prints ns per element for QSGD (s = 15, 32- and 8-bit draws), TernGrad, a 3-bit
stochastic scalar table (TNQ-like), natural compression, sign, a 3-bit nearest-level table and
Rand-K's keys, d = 1e7, best of 7 calls. ``--source`` times another version of the kernel (the
checksums show whether two versions give the same outputs). A ``MODE`` name runs that mode only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

from ratedist import _native

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", type=int, default=0, help="core to pin to")
    ap.add_argument("--source", default=str(ROOT / "ratedist" / "_native" / "quantize.cc"))
    ap.add_argument("mode", nargs="?", default=None, help="one mode name, e.g. 'tnq 3b'")
    args = ap.parse_args()
    cxx = _native._compiler()
    flags = [f for f in _native._CXXFLAGS if f not in ("-shared", "-fPIC")]
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "harness"
        cmd = [
            *cxx,
            *flags,
            f"-I{jax.ffi.include_dir()}",
            f'-DQSRC="{Path(args.source).resolve()}"',
            str(HERE / "native" / "quantize_harness.cc"),
            "-o",
            str(exe),
        ]
        subprocess.run(cmd, check=True)
        os.sched_setaffinity(0, {args.cpu})
        run = [str(exe)] + ([args.mode] if args.mode else [])
        print(f"{Path(args.source).name}, pinned to core {args.cpu}", flush=True)
        sys.exit(subprocess.run(run, check=False).returncode)


if __name__ == "__main__":
    main()
