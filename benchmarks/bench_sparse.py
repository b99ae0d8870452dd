"""Users' own sparse data: EF21-Top-K in the simulator against a numpy + scipy.sparse loop.

Two problems, both given as ``scipy.sparse`` data, float64 on both sides:

* ``quadratic``: the 3PC tridiagonal quadratics (arXiv 2202.00998, paper instance: d = 1000,
  n = 10 workers, ~3d non-zeros per worker) passed as per-worker ``scipy.sparse`` matrices to
  ``quadratic(A, b)`` (layout ``dia``, chosen automatically, and ``coo`` forced);
* ``logistic``: a synthetic svmlight file (M samples x d features at the given density, labels
  from a sparse logistic model) written with scikit-learn's ``dump_svmlight_file`` into a
  temporary directory and read by ``logistic_libsvm`` (sparse, padded COO per worker; on CPU
  the worker gradients come from the native sparse kernel, ``ratedist/_native/sparse.cc``,
  unless ``RATEDIST_NATIVE=0``: the header line says which).

The baseline is the loop a user would write: per worker ``A_i @ x - b_i`` (logistic:
``X_i @ x`` and ``X_iT @ (...)``, ``X_iT`` the faster for the data of ``X_i.T`` (a CSC view)
and a precomputed CSR transpose, timed before the run; the regulariser, the same for all
workers, once per step), Top-K by ``np.argpartition``, the EF21 state update
``g_i += TopK(grad_i - g_i)``, and ``f(x^t)`` (the simulator's trace keeps ``f`` too; its
other diagnostics are off).

The process is pinned to one core (``os.sched_setaffinity(0, {0})``) for both sides; XLA runs
single-threaded. Prints wall AND CPU seconds per iteration (medians of interleaved repeats),
their ratio, and the build times (problem construction with all constants, and the first
compile). The machine may be shared: ratios measured back to back are the reliable numbers.

Usage:
    python benchmarks/bench_sparse.py                 # both problems
    python benchmarks/bench_sparse.py --quick         # fewer steps and repeats
    python benchmarks/bench_sparse.py --density 0.005 # logistic at 0.5 % density
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc

_ENV = {
    "MALLOC_TRIM_THRESHOLD_": "1000000000",
    "MALLOC_MMAP_THRESHOLD_": "1000000000",
    "MALLOC_ARENA_MAX": "1",  # XLA's threads on the main heap too (see bench_compressors.py)
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
if any(os.environ.get(k) != v for k, v in _ENV.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_ENV})
os.sched_setaffinity(0, {0})

import jax  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.special import expit  # noqa: E402

jax.config.update("jax_enable_x64", True)

from ratedist.compressors import make  # noqa: E402
from ratedist.sim import ef21  # noqa: E402
from ratedist.sim.problems import logistic_libsvm, quadratic, tridiagonal_quadratic  # noqa: E402
from ratedist.sim.problems.sparse import (  # noqa: E402
    native_available as sparse_native_available,
)
from ratedist.sim.runner import make_stepper, theory_gamma  # noqa: E402


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    w, c = _clock()
    return w - t[0], c - t[1]


# ------------------------------------------------------------------------------ problems


def tridiagonal_sparse(n: int, d: int):
    """Per-worker scipy.sparse A_i, dense b_i and x0 of the 3PC paper instance (no dense A)."""
    ref = tridiagonal_quadratic(n, d, paper=True)  # O(d) closed forms: only the draws are used
    nu, shift, b1 = ref.data["nu"], ref.data["shift"], ref.data["b1"]
    T = sp.diags([-np.ones(d - 1), 2 * np.ones(d), -np.ones(d - 1)], [-1, 0, 1], format="csr")
    mats = [sp.csr_array(nu[i] / 4 * T + shift[i] * sp.eye(d, format="csr")) for i in range(n)]
    b = np.zeros((n, d))
    b[:, 0] = b1
    return mats, b, ref.x0


def write_svmlight(path: str, M: int, d: int, density: float, seed: int = 0) -> int:
    """A synthetic binary classification file; returns its number of non-zeros."""
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(seed)
    X = sp.random(M, d, density=density, format="csr", random_state=rng)
    w = rng.standard_normal(d) * np.sqrt(1 / max(1.0, density * d))
    y = np.where(rng.uniform(size=M) < expit(X @ w), 1, -1)
    dump_svmlight_file(X, y, path, zero_based=False)
    return X.nnz


# ------------------------------------------------------------------------------ numpy loops


def numpy_ef21_quadratic(mats, b, x0, gamma, k, steps):
    """EF21-Top-K with per-worker scipy.sparse A_i (float64): x and the trace of f."""
    n, d = b.shape
    x = x0.copy()
    h = np.stack([A @ x - bi for A, bi in zip(mats, b, strict=True)])
    g = h.mean(0)
    fs = np.empty(steps)
    for t in range(steps):
        x -= gamma * g
        f = 0.0
        for i in range(n):
            Ax = mats[i] @ x
            f += 0.5 * (x @ Ax) - b[i] @ x
            v = Ax - b[i] - h[i]
            idx = np.argpartition(np.abs(v), d - k)[d - k :]
            h[i, idx] += v[idx]
        g = h.mean(0)
        fs[t] = f / n
    return x, fs


def numpy_ef21_logistic(Xs, XTs, ys, lam, x0, gamma, k, steps):
    """EF21-Top-K on the nonconvex logistic problem, X_i as CSR and X_iᵀ as given (float64).

    The regulariser (the same for every worker) is computed once per step.
    """
    n, d = len(Xs), x0.shape[0]
    m = Xs[0].shape[0]

    def regulariser(x):
        r = 1 / (1 + x * x)
        return lam * np.sum(x * x * r), lam * 2 * x * r * r

    def grad(i, x, reg):
        z = -ys[i] * (Xs[i] @ x)
        f = np.mean(np.logaddexp(0.0, z)) + reg[0]
        return f, -(XTs[i] @ (ys[i] * expit(z))) / m + reg[1]

    x = x0.copy()
    reg = regulariser(x)
    h = np.stack([grad(i, x, reg)[1] for i in range(n)])
    g = h.mean(0)
    fs = np.empty(steps)
    for t in range(steps):
        x -= gamma * g
        reg = regulariser(x)
        f = 0.0
        for i in range(n):
            fi, gi = grad(i, x, reg)
            f += fi
            v = gi - h[i]
            idx = np.argpartition(np.abs(v), d - k)[d - k :]
            h[i, idx] += v[idx]
        g = h.mean(0)
        fs[t] = f / n
    return x, fs


# ------------------------------------------------------------------------------ timing


def time_pair(prob, k, steps, repeats, baseline):
    """Per-iteration (wall, cpu) medians of the simulator and of ``baseline(gamma, steps)``.

    Returns also the first-call seconds of the simulator (compile + one chunk).
    """
    alg = ef21(make(f"top-k:k={k}"))
    gamma = theory_gamma(alg, prob)
    st = make_stepper(
        alg,
        prob,
        gamma=gamma,
        key=jax.random.key(0),
        dtype=np.float64,
        check_3pc=False,
        diagnostics=False,
    )
    t0 = _clock()
    state, _ = st.init()
    state, out = st.advance(state, 1, steps)
    jax.block_until_ready(out)
    first = _since(t0)[0]
    sim, ref = [], []
    t = 1 + steps
    for _ in range(repeats):  # interleaved: a change of load hits both alike
        t0 = _clock()
        state, out = st.advance(state, t, steps)
        jax.block_until_ready(out)
        sim.append(_since(t0))
        t += steps
        t0 = _clock()
        baseline(gamma, steps)
        ref.append(_since(t0))
    sim_m = np.median(np.asarray(sim), axis=0) / steps
    ref_m = np.median(np.asarray(ref), axis=0) / steps
    return sim_m, ref_m, first - sim_m[0] * steps


def fastest_transpose(Xs, repeats: int = 20):
    """``(name, [X_iᵀ])``: the faster of two ways a user can write ``X_iᵀ s`` with scipy.

    ``X_i.T`` (a CSC view of the CSR matrix: scipy's CSC product, which scatters) or a CSR
    copy of the transpose made once (row-wise dot products; faster when columns hold many
    entries, slower at low density, where it walks d short rows). Timed here on the data, the
    minimum of ``repeats`` products for all workers.
    """
    rng = np.random.default_rng(0)
    s = [rng.standard_normal(X.shape[0]) for X in Xs]
    forms = {
        "CSC view X_i.T": [X.T for X in Xs],
        "CSR copy of X_iᵀ": [sp.csr_array(X.T) for X in Xs],
    }
    best = {}
    for name, XTs in forms.items():
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            for XT, si in zip(XTs, s, strict=True):
                XT @ si
            times.append(time.process_time() - t0)
        best[name] = min(times)
    name = min(best, key=best.get)
    return name, forms[name], best


def traced_peak_mb(build) -> float:
    """Peak Python-traced memory (numpy buffers included) of ``build()``, in MB."""
    tracemalloc.start()
    try:
        build()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def _row(name, build, sim, ref, compile_s):
    print(
        f"{name:28} build {build[0]:6.2f}s wall {build[1]:6.2f}s cpu | "
        f"numpy {ref[0] * 1e3:8.3f} ms wall {ref[1] * 1e3:8.3f} ms cpu | "
        f"sim {sim[0] * 1e3:8.3f} ms wall {sim[1] * 1e3:8.3f} ms cpu | "
        f"ratio wall {ref[0] / sim[0]:5.2f}x cpu {ref[1] / sim[1]:5.2f}x | "
        f"compile {compile_s:5.2f}s",
        flush=True,
    )


def bench_quadratic(n, d, steps, repeats, layouts):
    mats, b, x0 = tridiagonal_sparse(n, d)
    k = max(1, d // 100)
    for layout in layouts:
        t0 = _clock()
        prob = quadratic(mats, b, x0=x0, layout=layout)
        build = _since(t0)
        sim, ref, comp = time_pair(
            prob,
            k,
            steps,
            repeats,
            lambda gamma, s: numpy_ef21_quadratic(mats, b, x0, gamma, k, s),
        )
        _row(f"quadratic d={d} n={n} {prob.config['sparse']['layout']}", build, sim, ref, comp)
        nnz = sum(m.nnz for m in mats)
        peak = traced_peak_mb(lambda lay=layout: quadratic(mats, b, x0=x0, layout=lay))
        print(
            f"  build peak traced memory {peak:.1f} MB (nnz {nnz}; dense A_i: {n * d * d * 8e-6:.0f} MB)"
        )


def bench_logistic(n, M, d, density, steps, repeats, fstar):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.svm")
        nnz = write_svmlight(path, M, d, density)
        size = os.path.getsize(path) / 1e6
        print(f"svmlight file: {M} x {d}, nnz {nnz} (density {nnz / (M * d):.4%}), {size:.0f} MB")
        t0 = _clock()
        prob = logistic_libsvm(path, n_workers=n, n_features=d, solve_f_star=False)
        build = _since(t0)
        if fstar:
            t0 = _clock()
            logistic_libsvm(path, n_workers=n, n_features=d, solve_f_star=True)
            print(f"  with f* by L-BFGS-B: build {_since(t0)[0]:.2f}s wall")
        peak = traced_peak_mb(
            lambda: logistic_libsvm(path, n_workers=n, n_features=d, solve_f_star=False)
        )
        print(
            f"  build peak traced memory {peak:.0f} MB (nnz {nnz}: {nnz * 12e-6:.0f} MB as CSR; "
            f"dense X: {M * d * 8e-6:.0f} MB)"
        )
        from ratedist.sim.problems import load_libsvm

        X, y = load_libsvm(path, n_features=d)
    m = M // n
    Xs = [sp.csr_array(X[i * m : (i + 1) * m]) for i in range(n)]
    how, XTs, t_forms = fastest_transpose(Xs)
    print(
        "  numpy X_iᵀ s: "
        + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in t_forms.items())
        + f" (ten workers): the loop uses {how}"
    )
    ys = [y[i * m : (i + 1) * m] for i in range(n)]
    k = max(1, d // 100)
    lam = float(prob.data["lam"][0])
    x0 = prob.x0
    sim, ref, comp = time_pair(
        prob,
        k,
        steps,
        repeats,
        lambda gamma, s: numpy_ef21_logistic(Xs, XTs, ys, lam, x0, gamma, k, s),
    )
    _row(f"logistic {M}x{d} n={n} {prob.config['sparse']['layout']}", build, sim, ref, comp)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--problems", default="quadratic,logistic")
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--features", type=int, default=20_000)
    ap.add_argument("--density", type=float, default=0.001)
    ap.add_argument("--fstar", action="store_true", help="also time f* by L-BFGS-B")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    load = os.getloadavg()
    native = "on" if sparse_native_available(np.float64) else "off"
    print(
        f"jax {jax.__version__}, float64, pinned to core 0 (single-threaded XLA), native sparse "
        f"kernel {native}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    problems = args.problems.split(",")
    if "quadratic" in problems:
        bench_quadratic(10, 1000, 100 if args.quick else 400, repeats, ["auto", "coo"])
    if "logistic" in problems:
        bench_logistic(
            10,
            args.samples,
            args.features,
            args.density,
            10 if args.quick else 30,
            repeats,
            args.fstar,
        )
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
