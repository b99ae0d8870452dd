"""Throughput of the run-time compressors (GB/s of float32 input) against numpy copy bandwidth.

Usage::

    MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000 \\
        python benchmarks/bench_compressors.py [--quick] [--repeats 3] [--only NAME ...]

For each d, every compressor runs as ``jax.jit(update)`` on one float32 vector; the time is the
median of ``--repeats`` calls after a warm-up (compile) call. The baseline is ``np.copyto``
of the same vector in the same run (GB/s of bytes read); ``ratio = compressor / copy``.
A second table times the selection of K = d/100 indices: the O(d) threshold sparsifier, the
exact ``top_k_abs`` (native kernel on CPU), ``jax.lax.top_k`` and ``np.argpartition``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ratedist.compressors import make
from ratedist.compressors.select import native_available, top_k_abs


def _configs(d: int) -> list[tuple[str, str]]:
    k = max(1, d // 100)
    out = [
        ("identity", "identity"),
        ("sign", "sign"),
        ("scaled-sign", "scaled-sign"),
        ("top-k 1%", f"top-k:k={k}"),
        ("top-k-sign 1%", f"top-k-sign:k={k}"),
        ("rand-k 1%", f"rand-k:k={k}"),
        ("rand-k-unbiased 1%", f"rand-k-unbiased:k={k}"),
        ("threshold 1%", "threshold:kappa=0.01"),
        ("qsgd s=1", "qsgd:s=1"),
        ("qsgd s=15", "qsgd:s=15"),
        ("qsgd s=15 rng8", "qsgd:s=15,rng_bits=8"),
        ("qsgd s=15 rng16", "qsgd:s=15,rng_bits=16"),
        ("nuqsgd s=3", "nuqsgd:s=3"),
        ("nuqsgd s=3 rng8", "nuqsgd:s=3,rng_bits=8"),
        ("terngrad", "terngrad"),
        ("terngrad rng8", "terngrad:rng_bits=8"),
        ("natural", "natural"),
        ("natural rng8", "natural:rng_bits=8"),
        ("scalar lloyd-max 3b", "scalar:method=lloyd-max,bits=3"),
        ("scalar tnq 3b (stoch.)", "scalar:method=tnq,bits=3"),
        ("scalar tnq 3b rng8", "scalar:method=tnq,bits=3,rng_bits=8"),
    ]
    return out


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _copy_gbs(x_np: np.ndarray, repeats: int) -> float:
    dst = np.empty_like(x_np)
    np.copyto(dst, x_np)
    t = _median_time(lambda: np.copyto(dst, x_np), repeats)
    return x_np.nbytes / t / 1e9


def bench(d: int, repeats: int, only: list[str] | None) -> None:
    x_np = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    x = jnp.asarray(x_np)
    key = jax.random.key(0)
    copy = _copy_gbs(x_np, max(repeats, 5))
    print(f"\nd = {d:.0e} (float32, {x_np.nbytes / 1e6:.0f} MB); numpy copy {copy:.2f} GB/s")
    print(f"{'compressor':<24}{'ms':>10}{'GB/s':>9}{'ratio':>8}")
    for label, spec in _configs(d):
        if only and not any(o in label for o in only):
            continue
        try:
            comp = make(spec)
        except ValueError as exc:  # e.g. a design method not registered in this checkout
            print(f"{label:<24}  skipped: {exc}")
            continue
        state = comp.init(x)
        f = jax.jit(lambda x, s, k, comp=comp: comp.update(x, s, key=k)[0])
        jax.block_until_ready(f(x, state, key))
        t = _median_time(lambda f=f, state=state: f(x, state, key), repeats)
        gbs = x_np.nbytes / t / 1e9
        print(f"{label:<24}{t * 1e3:>10.2f}{gbs:>9.3f}{gbs / copy:>8.3f}")


def bench_selection(d: int, repeats: int) -> None:
    """K = d/100 selection: threshold, exact Top-K (native kernel / lax.top_k), argpartition."""
    x_np = np.random.default_rng(1).standard_normal(d).astype(np.float32)
    x = jnp.asarray(x_np)
    k = d // 100
    thr = make("threshold:kappa=0.01")
    fns = {
        "threshold": jax.jit(lambda x: thr.update(x, ())[0]),
        "top_k_abs": jax.jit(lambda x: top_k_abs(x, k)[1]),
        "lax.top_k": jax.jit(lambda x: jax.lax.top_k(jnp.abs(x), k)[1]),
    }
    res = {}
    for name, f in fns.items():
        jax.block_until_ready(f(x))
        res[name] = _median_time(lambda f=f: f(x), repeats)
    res["np.argpartition"] = _median_time(
        lambda: np.argpartition(np.abs(x_np), d - k)[d - k :], repeats
    )
    base = res["np.argpartition"]
    print(
        f"d = {d:.0e}: "
        + ", ".join(f"{n} {t * 1e3:.3f} ms ({base / t:.2f}x)" for n, t in res.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 1e5 and 1e6 only")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per point (median)")
    parser.add_argument("--only", nargs="*", help="substrings of compressor labels to run")
    args = parser.parse_args()
    sizes = [10**5, 10**6] if args.quick else [10**6, 10**7]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.device_count()}")
    for d in sizes:
        bench(d, args.repeats, args.only)
    native = "native kernel" if native_available(jnp.float32) else "NO native kernel"
    print(f"\nselection of K = d/100 indices ({native}); (x) = speed over np.argpartition")
    for d in sorted({10**4, 10**5, *sizes}):
        bench_selection(d, args.repeats)


if __name__ == "__main__":
    main()
