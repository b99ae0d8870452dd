"""Lloyd–Max for 256 Gaussian levels: Newton solve vs plain Lloyd iteration, same tolerance.

Usage::

    python benchmarks/bench_lloyd_max.py [--levels 256] [--tol 1e-12] [--repeats 3]
        [--lloyd-max-iter 200000] [--lloyd-time-limit 60]

Both start from the same companded (``p^(1/3)``) levels and stop on the same criterion
(``max |level - centroid| / std <= tol``). Plain Lloyd may be capped by sweeps or time; the
script then prints the residual it reached. Medians of ``--repeats`` runs; the ratio is
plain-Lloyd time / Newton time measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ratedist.quantizers import lloyd, lloyd_max
from ratedist.quantizers.exact import deterministic_mse
from ratedist.sources import Gaussian


def _time(fn, repeats: int):
    times, sol = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        sol = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, sol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=256)
    parser.add_argument("--tol", type=float, default=1e-12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lloyd-max-iter", type=int, default=200_000)
    parser.add_argument("--lloyd-time-limit", type=float, default=60.0)
    args = parser.parse_args()
    src = Gaussian(1.0)
    n, tol = args.levels, args.tol

    t_newton, all_newton, newton = _time(lambda: lloyd_max(src, n, tol=tol), args.repeats)
    t_lloyd, all_lloyd, plain = _time(
        lambda: lloyd(
            src, n, tol=tol, max_iter=args.lloyd_max_iter, time_limit_s=args.lloyd_time_limit
        ),
        args.repeats,
    )
    d_newton = deterministic_mse(newton.value, src)
    d_lloyd = deterministic_mse(plain.value, src)
    dl = float(np.max(np.abs(newton.value.levels - plain.value.levels)))
    print(f"Gaussian, {n} levels, tol {tol:g} (max |level - centroid| / std)")
    print(
        f"newton : median {t_newton * 1e3:9.1f} ms  runs {[round(t * 1e3, 1) for t in all_newton]}"
        f"  iterations {newton.n_iter}  residual {newton.residual:.2e}"
        f"  converged {newton.converged}  mse {d_newton:.15g}"
    )
    print(
        f"lloyd  : median {t_lloyd * 1e3:9.1f} ms  runs {[round(t * 1e3, 1) for t in all_lloyd]}"
        f"  sweeps {plain.n_iter}  residual {plain.residual:.2e}"
        f"  converged {plain.converged}  mse {d_lloyd:.15g}"
    )
    print(f"max |level difference| {dl:.2e}")
    print(f"ratio lloyd / newton: {t_lloyd / t_newton:.0f}x (measured, same run)")
    if not plain.converged:
        # Lloyd converges linearly: r_k ≈ C rho^k. Estimate rho from a run with half the sweeps
        # and extrapolate the sweeps (and time at the measured cost per sweep) to reach tol.
        half = lloyd(src, n, tol=tol, max_iter=max(plain.n_iter // 2, 1))
        rho = (plain.residual / half.residual) ** (1.0 / (plain.n_iter - half.n_iter))
        more = np.log(tol / plain.residual) / np.log(rho)
        sweeps = plain.n_iter + more
        t_sweep = t_lloyd / plain.n_iter
        print(
            f"plain Lloyd capped: contraction per sweep {rho:.6f}; extrapolated "
            f"{sweeps:.3g} sweeps ≈ {sweeps * t_sweep:.0f} s to reach {tol:g} "
            f"(ratio ≈ {sweeps * t_sweep / t_newton:.0f}x, extrapolated)"
        )


if __name__ == "__main__":
    main()
