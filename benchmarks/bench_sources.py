"""Cost of the empirical (kernel density) source against closed-form sources.

Prints the median of 3 runs of each operation and its ratio to the same operation on
``Gaussian`` (closed form, measured in the same run). Run: ``python benchmarks/bench_sources.py``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ratedist.sources import Empirical, Gaussian, PowerLaw, StudentT


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    edges = np.linspace(-4.0, 4.0, 257)  # 256 cells, as an 8-bit quantizer designer would use
    x = np.linspace(-4.0, 4.0, 1000)
    q = (np.arange(255) + 0.5) / 255
    sources = {
        "gaussian": Gaussian(1.0),
        "student-t(5)": StudentT(5.0),
        "power-law(4)": PowerLaw(4.0),
        "empirical n=1e3": Empirical(rng.standard_normal(1_000)),
        "empirical n=1e4": Empirical(rng.standard_normal(10_000)),
        "empirical n=1e5": Empirical(rng.standard_normal(100_000)),
    }
    ops = {
        "pdf(1000 pts)": lambda s: s.pdf(x),
        "cdf(1000 pts)": lambda s: s.cdf(x),
        "M2(256 cells)": lambda s: s.partial_moment(2, edges[:-1], edges[1:]),
        "ppf(255 q)": lambda s: s.ppf(q),
        "entropy": lambda s: s.entropy_bits(),
    }
    base = {op: median_time(lambda f=f: f(sources["gaussian"])) for op, f in ops.items()}
    print(f"{'source':18s} {'operation':15s} {'median s':>10s} {'x gaussian':>11s}")
    for name, src in sources.items():
        for op, f in ops.items():
            reps = 1 if name.endswith("1e5") and op in ("ppf(255 q)", "entropy") else 3
            t = median_time(lambda f=f, src=src: f(src), repeats=reps)
            print(f"{name:18s} {op:15s} {t:10.4f} {t / base[op]:11.1f}")


if __name__ == "__main__":
    main()
