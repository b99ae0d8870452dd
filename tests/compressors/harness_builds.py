"""Builds of a native kernel's C++ benchmark harness (``benchmarks/native/``) with extra
compiler flags, for tests that compare the builds' printed outputs (instruction-set variants,
fixed code paths)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jax

from ratedist import _native

ROOT = Path(__file__).resolve().parents[2]


def harness_outputs(
    harness: str, source: str, macro: str, variants: dict[str, list[str]], out_dir: Path, args=()
) -> dict[str, list[str]]:
    """For each ``label -> extra flags``: compile ``benchmarks/native/<harness>`` with
    ratedist's kernel flags (less the shared-library ones), the extra flags and
    ``-D<macro>="ratedist/_native/<source>"``, run it with ``args``; its stdout lines."""
    flags = [f for f in _native._CXXFLAGS if f not in ("-shared", "-fPIC")]
    src = ROOT / "ratedist" / "_native" / source
    lines = {}
    for i, (label, extra) in enumerate(variants.items()):
        exe = out_dir / f"harness{i}"
        cmd = [*_native._compiler(), *flags, *extra, f"-I{jax.ffi.include_dir()}"]
        cmd += [f'-D{macro}="{src}"', str(ROOT / "benchmarks" / "native" / harness)]
        subprocess.run([*cmd, "-o", str(exe)], check=True, timeout=300)
        out = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        lines[label] = out.stdout.splitlines()
    return lines
