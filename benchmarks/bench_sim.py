"""Simulator throughput: steps/second of EF21-Top-K and of EF compressed SGD with scaled sign,
against a plain numpy loop over workers doing the same arithmetic, measured in the same run.

Problem: the tridiagonal quadratic family (O(d) gradients, float32), N workers, dimension d,
K = d/100 for Top-K. Both sides compute the same per-step metrics as the simulator (f(x^t),
||grad f(x^t)||^2, G^t); the numpy baseline uses ``np.argpartition`` (O(d), exact) for Top-K.

Usage:
    python benchmarks/bench_sim.py            # N in {8, 32, 128}, d in {1e4, 1e5, 1e6}
    python benchmarks/bench_sim.py --quick    # N in {8, 32}, d in {1e4, 1e5}

Prints, per (method, N, d): median steps/s of >= 3 repeats for the simulator and for numpy,
their ratio, the compile time and its share of a 1000-step run. The machine is shared: run
twice and compare; ratios measured back to back are the reliable numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Large fresh outputs are re-faulted page by page unless glibc keeps freed memory around.
_ENV = {"MALLOC_TRIM_THRESHOLD_": "1000000000", "MALLOC_MMAP_THRESHOLD_": "1000000000"}
# numpy is single-threaded; XLA's intra-op thread pool on 2 oversubscribed cores was measured
# 2-4x SLOWER than one thread, so the default compares like with like (--multi-thread: XLA's).
if "--multi-thread" not in sys.argv:
    _ENV["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
if any(os.environ.get(k) != v for k, v in _ENV.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_ENV})

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ratedist.compressors import error_feedback, make  # noqa: E402
from ratedist.sim import compressed_sgd, ef21, tridiagonal_quadratic  # noqa: E402
from ratedist.sim.runner import make_stepper, theory_gamma  # noqa: E402


def _tx(x):
    t = 2 * x
    t[1:] -= x[:-1]
    t[:-1] -= x[1:]
    return t


def numpy_loop(method, prob, gamma, k, steps):
    """The reference: a Python loop over workers with numpy float32 arrays."""
    n, d = prob.n_workers, prob.dim
    f32 = np.float32
    nu = prob.data["nu"].astype(f32)
    shift = f32(prob.data["shift"][0])
    b1 = prob.data["b1"].astype(f32)
    gamma = f32(gamma)
    x = prob.x0.astype(f32)
    h = np.zeros((n, d), f32)  # EF21: g_i; EF-sign: error e_i
    g = np.zeros(d, f32)
    tx = _tx(x)
    for i in range(n):  # g_i^0 = grad f_i(x^0)
        gi = (nu[i] / 4) * tx + shift * x
        gi[0] -= b1[i]
        if method == "ef21":
            h[i] = gi
        g += gi
    g /= n
    hist = []
    for _ in range(steps):
        x -= gamma * g
        tx = _tx(x)
        gnew = np.zeros(d, f32)
        gfull = np.zeros(d, f32)
        f = G = 0.0
        for i in range(n):
            gi = (nu[i] / 4) * tx + shift * x
            f += 0.5 * float(x @ gi) - 0.5 * float(b1[i] * x[0])
            gi[0] -= b1[i]
            if method == "ef21":
                v = gi - h[i]
                idx = np.argpartition(np.abs(v), d - k)[d - k :]
                h[i][idx] += v[idx]
                msg = h[i]
            else:
                v = gi + h[i]
                scale = np.abs(v).sum() / d
                msg = scale * np.sign(v)
                h[i] = v - msg
            err = msg - gi
            G += float(err @ err)
            gnew += msg
            gfull += gi
        g = gnew / n
        gfull /= n
        hist.append((f / n, float(gfull @ gfull), G / n))
    return x, hist


def build(method, prob, k):
    if method == "ef21":
        return ef21(make(f"top-k:k={k}"))
    return compressed_sgd(error_feedback(make("scaled-sign")))


def bench(method, n, d, repeats, steps, engines, check_3pc=True):
    """Median steps/s per engine and of numpy, plus compile seconds per engine.

    Repeats are interleaved (each engine, then numpy, in turn) so that a change of machine
    load hits all of them alike; ratios are taken of the medians.
    """
    prob = tridiagonal_quadratic(n, d, seed=0)
    k = max(1, d // 100)
    alg = build(method, prob, k)
    gamma = theory_gamma(alg, prob)
    steppers, states, first = {}, {}, {}
    for e in engines:
        st = make_stepper(
            alg,
            prob,
            gamma=gamma,
            key=jax.random.key(0),
            engine=e,
            dtype=np.float32,
            check_3pc=check_3pc,
            diagnostics=False,  # the numpy baseline computes no per-step diagnostics
        )
        t0 = time.perf_counter()
        state, _ = st.init()
        state, out = st.advance(state, 1, steps)
        jax.block_until_ready(out)
        first[e] = time.perf_counter() - t0  # compile(init) + compile(chunk) + init + chunk
        steppers[e], states[e] = st, state
    times = {e: [] for e in engines}
    np_times = []
    t = 1 + steps
    for _ in range(repeats):
        for e in engines:
            t0 = time.perf_counter()
            states[e], out = steppers[e].advance(states[e], t, steps)
            jax.block_until_ready(out)
            times[e].append(time.perf_counter() - t0)
        t += steps
        t0 = time.perf_counter()
        numpy_loop(method, prob, gamma, k, steps)
        np_times.append(time.perf_counter() - t0)
    sims = {}
    for e in engines:
        rate = steps / float(np.median(times[e]))
        sims[e] = (rate, max(first[e] - steps / rate, 0.0))
    return sims, steps / float(np.median(np_times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N in {8,32}, d in {1e4,1e5}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--no-3pc-check", action="store_true", help="run(check_3pc=False): no 3PC residual"
    )
    ap.add_argument("--multi-thread", action="store_true", help="let XLA use its thread pool")
    ap.add_argument("--methods", default="ef21,ef_sign")
    ap.add_argument("--engines", default="loop,vmap", help="simulator engines to time")
    ap.add_argument("--sizes", default=None, help="explicit N:d list, e.g. 8:10000,32:100000")
    args = ap.parse_args(argv)
    Ns = (8, 32) if args.quick else (8, 32, 128)
    ds = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    sizes = [(n, d) for n in Ns for d in ds]
    if args.sizes:
        sizes = [tuple(int(float(v)) for v in item.split(":")) for item in args.sizes.split(",")]
    engines = args.engines.split(",")
    threads = "multi-threaded" if args.multi_thread else "single-threaded"
    print(f"jax {jax.__version__} ({threads} XLA) on {os.cpu_count()} cpus, float32")
    head = f"{'method':8} {'N':>4} {'d':>8} {'numpy st/s':>10}"
    for e in engines:
        head += f" {e + ' st/s':>10} {'ratio':>6} {'compile':>7} {'@1000':>6}"
    print(head)
    for method in args.methods.split(","):
        for n, d in sizes:
            steps = int(np.clip(4e8 / (n * d), 3, 200))
            sims, ref = bench(method, n, d, args.repeats, steps, engines, not args.no_3pc_check)
            line = f"{method:8} {n:4d} {d:8d} {ref:10.2f}"
            for e in engines:
                rate, comp = sims[e]
                share = comp / (comp + 1000 / rate)
                line += f" {rate:10.2f} {rate / ref:6.2f} {comp:6.2f}s {share:6.1%}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
