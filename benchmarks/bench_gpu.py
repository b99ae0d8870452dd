"""GPU throughput of the simulator: steps/s and the fraction of HBM bandwidth, N = 128 workers,
d = 10^7, for EF21-Top-K (K = d/100) and error-feedback SGD with scaled sign (goal: >= 50 %).

NOT MEASURED YET: no GPU was available when this script was written. It runs on CPU with
``--quick`` (tiny sizes; the test suite checks the arithmetic of the byte model, not speed),
where the "fraction of bandwidth" is meaningless unless ``--peak-gbps`` is given.

Problem: the tridiagonal quadratic family (``f_i(x) = ½ xᵀA_i x − xᵀb_i``, A_i tridiagonal
with per-worker scalars: the gradient is a 3-point stencil of x, no per-worker d-vector of
data), float32, ``run(check_3pc=False, diagnostics=False)``: the only per-worker d-vectors
kept between steps are the method's own state.

Minimal bytes per step (:func:`min_bytes_per_step`), s = 4 bytes per float32:

    EF21-Top-K:      h_i read + h_i written, every worker       2 N d s
    EF-scaled-sign:  e_i read + e_i written, every worker       2 N d s
    both:            x read once, x written once (server)    + 2 d s

= 10.32 GB per step at N = 128, d = 10^7 (both methods): at the H200's 4.8 TB/s, at most
465 steps/s; the 50 % goal is >= 233 steps/s. The gradient stencil, f_i(x), the selection of
the K largest |h_i − grad_i| and the worker-order aggregation are assumed fused into that one
pass (an exact Top-K threshold or the l1 norm of the scaled sign need a second read of the
worker's vector in practice: 3 N d s, reported as the "two-pass" fraction).

Usage:
    python benchmarks/bench_gpu.py                      # N = 128, d = 1e7, on jax.devices()[0]
    python benchmarks/bench_gpu.py --engine shard_map   # workers over all visible GPUs
    python benchmarks/bench_gpu.py --quick              # N = 8, d = 1e4: CPU smoke run

Prints per method: compile + first chunk seconds, median steps/s of ``--repeats`` chunks of
``--steps`` steps, minimal bytes per step, achieved GB/s and its fraction of ``--peak-gbps``
(default: the known peak of the device kind, else none).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from ratedist.compressors import error_feedback, make
from ratedist.sim import compressed_sgd, ef21, tridiagonal_quadratic
from ratedist.sim.runner import make_stepper, theory_gamma

#: HBM peak bandwidth in GB/s by device kind (vendor data sheets, SXM parts)
PEAK_GBPS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0, "GH200": 4000.0}
FLOAT32_BYTES = 4
METHODS = ("ef21_top_k", "ef_scaled_sign")


def min_bytes_per_step(n_workers: int, dim: int, word: int = FLOAT32_BYTES, passes: int = 2):
    """Bytes a step must move at least: ``passes`` d-vectors per worker (its state read and
    written) plus the server's x read and written. Same for both methods (module docstring)."""
    return (passes * n_workers + 2) * dim * word


def build(method: str, dim: int):
    if method == "ef21_top_k":
        return ef21(make(f"top-k:k={max(1, dim // 100)}"))
    return compressed_sgd(error_feedback(make("scaled-sign")))


def peak_gbps(device, override: float | None) -> float | None:
    if override is not None:
        return override
    kind = getattr(device, "device_kind", "")
    return next((v for k, v in PEAK_GBPS.items() if k in kind), None)


def bench(method: str, n: int, d: int, steps: int, repeats: int, engine: str):
    prob = tridiagonal_quadratic(n, d, seed=0)
    alg = build(method, d)
    st = make_stepper(
        alg,
        prob,
        gamma=theory_gamma(alg, prob),
        key=jax.random.key(0),
        engine=engine,
        aggregate="gather" if engine == "vmap" else "psum",
        dtype=np.float32,
        check_3pc=False,
        diagnostics=False,
    )
    t0 = time.perf_counter()
    state, _ = st.init()
    state, out = st.advance(state, 1, steps)
    jax.block_until_ready(out)
    first = time.perf_counter() - t0
    times, t = [], 1 + steps
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, out = st.advance(state, t, steps)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
        t += steps
    return first, steps / float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 8, d = 1e4, 20 steps (CPU)")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--d", type=float, default=1e7)
    ap.add_argument("--steps", type=int, default=50, help="steps per timed chunk")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engine", default="vmap", choices=("vmap", "shard_map"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--peak-gbps", type=float, default=None, help="HBM peak, GB/s")
    args = ap.parse_args(argv)
    n, d, steps = (8, 10_000, 20) if args.quick else (args.n, int(args.d), args.steps)
    dev = jax.devices()[0]
    peak = peak_gbps(dev, args.peak_gbps)
    n_dev = len(jax.devices()) if args.engine == "shard_map" else 1
    print(f"device: {dev.device_kind} x {n_dev} ({dev.platform}); N = {n}, d = {d:.0e}, float32")
    if dev.platform != "gpu":
        print("NOTE: not a GPU: these are not the GPU numbers (none measured yet)")
    mb = min_bytes_per_step(n, d)
    print(f"minimal bytes per step: {mb / 1e9:.4g} GB (2 N d s + 2 d s)")
    rows = []
    for method in args.methods.split(","):
        first, rate = bench(method, n, d, steps, args.repeats, args.engine)
        gbps = mb * rate / 1e9
        two = min_bytes_per_step(n, d, passes=3) * rate / 1e9
        frac = "n/a" if peak is None else f"{gbps / (peak * n_dev):.1%}"
        frac2 = "n/a" if peak is None else f"{two / (peak * n_dev):.1%}"
        rows.append((method, first, rate, gbps, frac, frac2))
    print(
        f"{'method':16s} {'first s':>8s} {'steps/s':>9s} {'GB/s':>8s} {'of peak':>8s} {'2-pass':>8s}"
    )
    for method, first, rate, gbps, frac, frac2 in rows:
        print(f"{method:16s} {first:8.2f} {rate:9.2f} {gbps:8.2f} {frac:>8s} {frac2:>8s}")
    return rows


if __name__ == "__main__":
    main()
