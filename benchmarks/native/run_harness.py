"""Build a C++ harness that includes a kernel's source and run it pinned to one core (the
shared part of ``bench_quantize_kernel.py`` and ``bench_select_kernel.py``)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax

from ratedist import _native

HERE = Path(__file__).resolve().parent


def run_harness(
    harness: str,
    macro: str,
    source: str,
    *,
    cpu: int,
    args: Sequence[str] = (),
    extra_flags: Sequence[str] = (),
    label: str = "",
) -> int:
    """Compile ``benchmarks/native/<harness>`` with ratedist's kernel flags (minus the shared
    library ones) plus ``extra_flags`` and ``-D<macro>="<source>"``, pin this process (and so
    the harness) to ``cpu``, run it with ``args``; returns its exit status."""
    cxx = _native._compiler()
    flags = [f for f in _native._CXXFLAGS if f not in ("-shared", "-fPIC")]
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "harness"
        cmd = [
            *cxx,
            *flags,
            *extra_flags,
            f"-I{jax.ffi.include_dir()}",
            f'-D{macro}="{Path(source).resolve()}"',
            str(HERE / harness),
            "-o",
            str(exe),
        ]
        subprocess.run(cmd, check=True)
        os.sched_setaffinity(0, {cpu})
        print(f"{Path(source).name}{label}, pinned to core {cpu}", flush=True)
        return subprocess.run([str(exe), *args], check=False).returncode
