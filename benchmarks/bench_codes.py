"""Decoding the cyclic repetition code inside jit: lookup table vs least squares.

For each (n, s): the host time to build the table (C(n, s) float64 least-squares solves), and
the median time of one jitted decode ``a(mask)`` (after compilation) with each decoder, for
one mask and for a batch of 256 masks (vmap). Not a test; numbers go to
docs/theory/gradient_coding.md.

Run: ``python3 benchmarks/bench_codes.py``.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from ratedist.sim.codes import crc

SIZES = [(8, 2), (12, 3), (16, 4), (24, 3), (32, 2)]
REPEATS = 7


def _median_time(fn, arg) -> float:
    jax.block_until_ready(fn(arg))  # compile
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    jax.config.update("jax_enable_x64", True)
    print(
        "| n | s | C(n,s) | table build (s) | table: 1 mask | lstsq: 1 mask | table: 256 | lstsq: 256 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n, s in SIZES:
        t0 = time.perf_counter()
        tab = crc(n, s, decoder="table")
        build = time.perf_counter() - t0
        lsq = crc(n, s, decoder="lstsq")
        masks = jnp.asarray(rng.random((256, n)).argsort(axis=1) >= s)
        row = [n, s, math.comb(n, s), f"{build:.3g}"]
        one = [_median_time(jax.jit(c.vector), masks[0]) for c in (tab, lsq)]
        many = [_median_time(jax.jit(jax.vmap(c.vector)), masks) for c in (tab, lsq)]
        row += [f"{t * 1e6:.0f} µs" for t in (*one, *many)]
        print("| " + " | ".join(map(str, row)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
