"""The golden-trace cases: every simulator method x engine on two problems.

The traces in ``tests/sim/data/golden_*.npz`` were recorded with this module by
``python tests/sim/golden_cases.py`` BEFORE the simulator round was rewritten as explicit
stages (server optimizer, participation, aggregation, downlink); ``test_sim_golden.py``
shows that the rewritten simulator reproduces them bit for bit. Re-recording them with the
code under test would make that test vacuous: do it only for an intended change of numbers,
measure the change against the previous code first, and say so in the commit and in
``test_sim_golden.py``'s docstring (which lists every re-recording and its reason).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data")
STEPS = 40
N_WORKERS = 8
#: emulated devices of the shard_map cases (2 workers per device)
N_DEVICES = 4

#: (name, builder of the algorithm, fixed gamma or None for the theory step size)
METHODS = {
    "gd": ("gd()", None),
    "csgd_qsgd": ("compressed_sgd(make('qsgd:s=4'))", 0.05),
    "csgd_ef_sign": ("compressed_sgd(error_feedback(make('scaled-sign')))", 0.05),
    "ef14_topk": ("ef14(make('top-k:k=3'))", 0.05),
    "ef21_topk": ("ef21(make('top-k:k=3'))", None),
    "ef21_natural": ("ef21(make('natural'))", 0.05),
    "lag": ("lag(0.5)", None),
    "clag_topk": ("clag(make('top-k:k=3'), 0.5)", None),
    "tpc_v1": ("tpc_v1(make('top-k:k=3'))", None),
    "tpc_v2": ("tpc_v2(make('top-k:k=3'), make('rand-k-unbiased:k=4'))", None),
    "tpc_v3": ("tpc_v3(make('top-k:k=3'), ef21(make('top-k:k=2')))", None),
    "tpc_v4": ("tpc_v4(make('top-k:k=3'), make('top-k:k=2'))", None),
    "tpc_v5": ("tpc_v5(make('top-k:k=3'), 0.3)", None),
    "marina_randk": ("marina(make('rand-k-unbiased:k=4'), 0.3)", None),
    "marina_permk": (f"marina(make('perm-k:n_workers={N_WORKERS}'), 0.3)", 0.05),
}

#: (engine, run keyword arguments); shard_map cases run in a process with N_DEVICES devices
ENGINES = {
    "vmap": {},
    "vmap_psum": {"aggregate": "psum"},
    "loop": {},
    "vmap_replicas": {"replicas": 2},
    "vmap_chunked": {"chunk": 10},
    "loop_nocheck": {"check_3pc": False},
    "vmap_f32": {"dtype": "float32"},
    "shard_map": {},
    "shard_map_gather": {"aggregate": "gather"},
    "shard_map_replicas": {"replicas": 2, "aggregate": "gather"},
}


def engine_of(case: str) -> str:
    return case.split("_")[0] if not case.startswith("shard_map") else "shard_map"


def problems():
    from ratedist.sim import logistic_nonconvex, tridiagonal_quadratic

    return {
        "tridiag": tridiagonal_quadratic(n_workers=N_WORKERS, dim=24, seed=3),
        "logistic_sgd": logistic_nonconvex(
            n_workers=N_WORKERS, n_samples=160, dim=16, seed=1, batch_size=4
        ),
    }


def build(expr: str):
    """The algorithm of a METHODS expression, evaluated in ``ratedist.sim``'s namespace."""
    from ratedist import sim
    from ratedist.compressors import error_feedback, make

    return eval(expr, {**vars(sim), "make": make, "error_feedback": error_feedback})


def flatten(trace) -> dict[str, np.ndarray]:
    """Every recorded field of a Trace as arrays (bits by layer)."""
    out = {}
    for name, v in trace._asdict().items():
        if name == "bits":
            for layer, b in v._asdict().items():
                out[f"bits.{layer}"] = np.asarray(b)
        elif isinstance(v, dict):  # hyper: the swept hyperparameters, by name
            for k, a in v.items():
                out[f"{name}.{k}"] = np.asarray(a)
        elif v is not None:
            out[name] = np.asarray(v)
    return out


def run_case(prob, method: str, engine_case: str):
    import jax
    import jax.numpy as jnp

    from ratedist.sim import run

    expr, gamma = METHODS[method]
    kw = dict(ENGINES[engine_case])
    if "dtype" in kw:
        kw["dtype"] = getattr(jnp, kw["dtype"])
    return run(
        build(expr),
        prob,
        steps=STEPS,
        key=jax.random.key(7),
        gamma=gamma,
        engine=engine_of(engine_case),
        **kw,
    )


def record(shard: bool) -> None:
    """Write the golden file of every problem that has none yet."""
    import jax

    jax.config.update("jax_enable_x64", True)
    cases = [e for e in ENGINES if e.startswith("shard_map") == shard]
    for pname, prob in problems().items():
        name = f"golden_{pname}_{'shard' if shard else 'local'}.npz"
        if (DATA / name).exists():
            continue
        arrays = {}
        for method in METHODS:
            for ec in cases:
                for field, a in flatten(run_case(prob, method, ec)).items():
                    arrays[f"{method}/{ec}/{field}"] = a
        np.savez_compressed(DATA / name, **arrays)
        print("wrote", DATA / name, len(arrays), "arrays")


if __name__ == "__main__":
    if sys.argv[1:] == ["--shard"]:
        if os.environ.get("XLA_FLAGS", "").find("device_count") < 0:
            env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={N_DEVICES}"}
            os.execve(sys.executable, [sys.executable, __file__, "--shard"], env)
        record(shard=True)
    else:
        record(shard=False)
