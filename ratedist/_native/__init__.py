"""Native CPU kernels, compiled on first use and called through JAX's FFI.

Three kernels:

- exact Top-K by magnitude in O(d) (``select.cc``), which
  :func:`ratedist.compressors.select.top_k_abs` uses on CPU. XLA's CPU ``TopK`` costs a
  multiple of ``numpy.argpartition`` at K = d/100; from d = 1e5 on, the kernel (SIMD
  candidate pass + radix select) is 30x or more faster than ``lax.top_k`` and 8-30x faster
  than argpartition (``benchmarks/README.md``, 2026-12-03);
- one-pass elementwise quantizers (``quantize.cc``) behind
  :mod:`ratedist.compressors._kernels`: stochastic rounding on a level table with a
  counter-based Threefry-2x32-20 stream keyed by the JAX key (bit-identical to the pure-JAX
  ``_kernels.stream_words``), the fused deterministic sign / scalar / threshold
  compressors, Rand-K's index set drawn from the same stream in one pass
  (:func:`ratedist.compressors._kernels.random_subset`), grid and Zⁿ rounding with the
  entropy of its symbols, the D_n lattice decoder and the entropies of lattice labels
  (:mod:`ratedist.compressors._symbols`, :func:`ratedist.quantizers.lattice.closest_point_dn`);
- sparse matrix-vector products ``M v``, ``Mᵀ v`` and the fused logistic / least-squares
  gradient terms (one pass over each row) on the padded per-worker CSR arrays (row
  pointers, column indices, values; ``sparse.cc``), and the fused terms again on a
  sliced-column copy (SELL-8 of the transpose), behind
  :mod:`ratedist.sim.problems.sparse`, batched over the workers.

Build: the C++ source ships inside the package and is compiled the first time it is needed
with the system C++ compiler (``$CXX``, else ``c++``) against the XLA FFI headers that come
with ``jaxlib`` (``jax.ffi.include_dir()``). The shared library is cached in
``$RATEDIST_CACHE_DIR`` (default ``$XDG_CACHE_HOME/ratedist`` or ``~/.cache/ratedist``) under
a name that hashes the source, the jaxlib version and the compiler command, and is written
atomically (compile to a temporary name, then ``os.replace``), so concurrent first uses are
safe. ``RATEDIST_NATIVE=0`` switches the kernels off (read once, at first use in a process).

Nothing depends on the kernels for correctness: callers fall back to pure-JAX code with the
same results (see :func:`ratedist.compressors.select.top_k_abs`), and a failed build is
reported once through the ``ratedist`` logger with the compiler's message.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import jax

_LOG = logging.getLogger("ratedist")


def _by_dtype(name: str, symbol: str) -> dict[str, tuple[str, str]]:
    """``{dtype: (target name, handler symbol)}`` of a handler defined for float32 and float64
    (``<name>_f32`` / ``<symbol>F32`` and ``<name>_f64`` / ``<symbol>F64``)."""
    return {f"float{b}": (f"{name}_f{b}", f"{symbol}F{b}") for b in (32, 64)}


#: FFI target names registered for the CPU platform, by JAX dtype name.
TOP_K_ABS_TARGETS = _by_dtype("ratedist_top_k_abs", "RatedistTopKAbs")

#: FFI targets of the elementwise quantizer kernel, by JAX dtype name.
QUANTIZE_TARGETS = _by_dtype("ratedist_quantize", "RatedistQuantize")

#: FFI targets of the integer-grid rounding with its symbol counts (``quantize.cc``), by dtype.
GRID_TARGETS = _by_dtype("ratedist_grid", "RatedistGrid")

#: FFI targets of the D_n lattice decoder (``quantize.cc``), by JAX dtype name.
CLOSEST_DN_TARGETS = _by_dtype("ratedist_closest_dn", "RatedistClosestDn")

#: FFI target (name, symbol) of Rand-K's index set (``quantize.cc``; no float operand).
RANDOM_SUBSET_TARGET = ("ratedist_random_subset", "RatedistRandomSubset")

#: FFI targets of Rand-K's dense update (the index set and the output in one call), by dtype.
RAND_K_DENSE_TARGETS = _by_dtype("ratedist_rand_k_dense", "RatedistRandKDense")

#: FFI target (name, symbol) of the per-column entropies of int32 labels (``quantize.cc``).
COLUMN_ENTROPY_TARGET = ("ratedist_column_entropy", "RatedistColumnEntropy")

#: FFI targets of the sparse COO product kernel, by JAX dtype name.
SPARSE_TARGETS = _by_dtype("ratedist_coo_product", "RatedistCooProduct")

#: FFI targets of the sparse kernel's fused data terms on sliced columns, by JAX dtype name.
SPARSE_SLICED_TARGETS = _by_dtype("ratedist_sliced_terms", "RatedistSlicedTerms")

#: C++ sources compiled into the one shared library.
_SOURCES = ("select.cc", "quantize.cc", "sparse.cc")

# -ffp-contract=off: no FMA contraction, so the kernels' arithmetic is that of XLA's
_CXXFLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-w")
_BUILD_TIMEOUT_S = 300


class NativeStatus(NamedTuple):
    """Whether the native kernels are in use, and why not when they are not.

    Attributes:
        available: the library is built, loaded and its FFI targets are registered.
        reason: ``"ok"``, or why the pure-JAX fallback is used.
        library: path of the shared library (None when not built).
    """

    available: bool
    reason: str
    library: str | None = None


def cache_dir() -> Path:
    """Where built kernels are cached (``$RATEDIST_CACHE_DIR`` or the XDG cache)."""
    env = os.environ.get("RATEDIST_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ratedist"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CXX", "c++"))


def _source() -> dict[str, str]:
    pkg = resources.files(__name__)
    return {name: pkg.joinpath(name).read_text(encoding="utf-8") for name in _SOURCES}


def _library_path(source: dict[str, str], cxx: list[str]) -> Path:
    import jaxlib

    tag = "\0".join(
        [
            *(f"{name}\0{text}" for name, text in sorted(source.items())),
            jaxlib.__version__,
            " ".join(cxx),
            " ".join(_CXXFLAGS),
            sys.platform,
            platform.machine(),
        ]
    )
    digest = hashlib.sha256(tag.encode()).hexdigest()[:16]
    return cache_dir() / f"native-{digest}.so"


def _build(source: dict[str, str], cxx: list[str], out: Path) -> None:
    """Compile ``source`` into ``out`` atomically; raises RuntimeError with the compiler's words."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        srcs = []
        for name, text in source.items():
            srcs.append(str(Path(tmp) / name))
            Path(srcs[-1]).write_text(text, encoding="utf-8")
        lib = Path(tmp) / out.name
        cmd = [*cxx, *_CXXFLAGS, f"-I{jax.ffi.include_dir()}", *srcs, "-o", str(lib)]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{shlex.join(cmd[:1])} could not run: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError(
                f"{shlex.join(cmd[:1])} exited {done.returncode}: " + " | ".join(tail)
            )
        os.replace(lib, out)


@functools.cache
def status() -> NativeStatus:
    """Build (once, cached on disk), load and register the kernels; never raises.

    Returns:
        A :class:`NativeStatus`. When ``available`` is False the callers use their pure-JAX
        fallback; the reason is also logged once as a warning (except for ``RATEDIST_NATIVE=0``).
    """
    if os.environ.get("RATEDIST_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return NativeStatus(False, "switched off by RATEDIST_NATIVE")
    cxx = _compiler()
    try:
        source = _source()
        path = _library_path(source, cxx)
        if not path.exists():
            _build(source, cxx, path)
        lib = ctypes.cdll.LoadLibrary(str(path))
        for target, symbol in (
            *TOP_K_ABS_TARGETS.values(),
            *QUANTIZE_TARGETS.values(),
            *GRID_TARGETS.values(),
            *CLOSEST_DN_TARGETS.values(),
            *SPARSE_TARGETS.values(),
            RANDOM_SUBSET_TARGET,
            *RAND_K_DENSE_TARGETS.values(),
            COLUMN_ENTROPY_TARGET,
            *SPARSE_SLICED_TARGETS.values(),
        ):
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu"
            )
    except Exception as exc:  # any failure means: use the fallback, and say why once
        reason = f"native kernels unavailable, using the pure-JAX code: {exc}"
        _LOG.warning("%s", reason)
        return NativeStatus(False, reason)
    return NativeStatus(True, "ok", str(path))


__all__ = [
    "CLOSEST_DN_TARGETS",
    "COLUMN_ENTROPY_TARGET",
    "GRID_TARGETS",
    "QUANTIZE_TARGETS",
    "RANDOM_SUBSET_TARGET",
    "RAND_K_DENSE_TARGETS",
    "SPARSE_SLICED_TARGETS",
    "SPARSE_TARGETS",
    "TOP_K_ABS_TARGETS",
    "NativeStatus",
    "cache_dir",
    "status",
]
