"""Theory table: step size, iterations and bits per worker to reach a target, per 3PC variant.

For the tridiagonal quadratic (n = 10, d = 100, exact L_-, L_+, f*) and each method of the
convergence figure: (A, B), gamma = 1/M1, the exact Lyapunov step limit, the iterations T for
the 3PC bound ``2 Delta0/(gamma T) + G0/(A T)`` to reach ``eps``, and the bits one worker sends
in T steps (payload of one compressor call measured on a random vector, 32 d bits for the
initial full gradient; LAG/CLAG are charged as if their trigger always fired, an upper bound;
3PCv5/MARINA in expectation over the coin). Deterministic: no simulation.

Run: ``python3 analysis/bounds_table.py [eps]``.
"""

from __future__ import annotations

import sys

from ratedist import bounds, sim
from ratedist.compressors import FLOAT_BITS


def rows(k: int) -> dict[str, sim.Algorithm]:
    """Every suite method of the registry (fact ``suite``) with Top-K(k) / Rand-K(k)."""
    return {
        name: sim.example_algorithm(name, k=k)
        for name in sim.ALGORITHMS.names()
        if sim.ALGORITHMS.facts(name)["suite"]
    }


def main(eps: float = 1e-2) -> int:
    prob = sim.tridiagonal_quadratic(10, 100)
    d, n, k = prob.dim, prob.n_workers, 10
    delta0 = prob.loss(prob.x0) - prob.f_star
    full = d * FLOAT_BITS
    print(
        f"tridiagonal quadratic n={n} d={d}: L_-={prob.L_minus:.4g} L_+={prob.L_plus:.4g} "
        f"Delta0={delta0:.4g}; target eps={eps:g}; Top-{k}/Rand-{k}, the registry's "
        "example zeta and p"
    )
    head = f"{'method':8s} {'A':>9s} {'B':>9s} {'1/M1':>9s} {'exact':>9s} {'T(eps)':>9s} {'bits/it':>9s} {'bits(eps)':>11s}"
    print(head)
    for name, alg in rows(k).items():
        A, B = alg.constants(d, n)
        bits_it = alg.bits_per_step(d, n, alg.hyper)
        b = bounds.three_pc_bound(delta0=delta0, L_minus=prob.L_minus, L_plus=prob.L_plus, A=A, B=B)
        gx = bounds.three_pc_step_size_exact(prob.L_minus, prob.L_plus, A, B)
        T = b.iterations_to(eps)
        total = b.bits_per_worker_to(eps, bits_it, initial_bits=full)
        print(
            f"{name:8s} {A:9.4g} {B:9.4g} {b.step_size:9.4g} {gx:9.4g} {T:9d} "
            f"{bits_it:9.4g} {total:11.4g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(*(float(a) for a in sys.argv[1:2])))
