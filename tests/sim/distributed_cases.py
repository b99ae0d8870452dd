"""Cases of the multi-process tests (``test_distributed.py``), and the script each process of
the job runs: ``python3 distributed_cases.py OUT.npz [CASE ...]`` under
``python3 -m ratedist.sim.launch`` (or :func:`ratedist.sim.distributed.launch`).

Every process runs the shard_map engine over the job's global mesh; process 0 saves the traces.
The reference (single-process vmap) is computed by the test from the same :data:`CASES`.
"""

import sys

import jax
import numpy as np

from ratedist.compressors import make
from ratedist.sim import (
    bernoulli_stragglers,
    coded,
    ef14,
    ef21,
    logistic_nonconvex,
    make_code,
    marina,
    tridiagonal_quadratic,
)

#: the Trace fields compared bit for bit
FIELDS = (
    "x",
    "f",
    "grad_norm_sq",
    "G",
    "server_error",
    "worker_error",
    "answered",
    "bits.container",
    "bits.entropy",
    "bits_down.container",
)


# Two workers per device (16 workers, 8 devices): with ONE worker per device XLA compiles the
# per-worker dot products for a batch of 1 differently from vmap's batch of N (last-bit
# differences in f; see tests/sim/test_sim_engines.py); with >= 2 per device they agree.


def ef21_top_k():
    prob = tridiagonal_quadratic(n_workers=16, dim=16, seed=1)
    return (ef21(make("top-k:k=3")), prob), {"steps": 12}


def marina_perm_k():
    # PermK needs d a multiple of n
    prob = tridiagonal_quadratic(n_workers=16, dim=32, seed=2)
    return (marina(make("perm-k:n_workers=16"), 0.3), prob), {"steps": 12, "gamma": 0.05}


def coded_stragglers():
    # 16 data partitions re-dealt by a fractional repetition code, Bernoulli stragglers,
    # decoded on the server; EF14 with scaled sign on each coded message
    base = logistic_nonconvex(n_workers=16, n_samples=96, dim=6, seed=3)
    c = coded(base, make_code("frc", n=16, s=1))
    rnd = c.round(ef14(make("scaled-sign")), bernoulli_stragglers(0.25))
    return (rnd, c.problem), {"steps": 12, "gamma": 0.1}


def marina_sweep_replicas():
    # a step-size sweep (one vmapped program) of 2 independent replicas each: leading axes
    # outside the shard_map
    prob = tridiagonal_quadratic(n_workers=16, dim=16, seed=4)
    alg = marina(make("rand-k-unbiased:k=4"), 0.3)
    return (alg, prob), {"steps": 8, "gamma": [0.02, 0.05], "replicas": 2}


CASES = {
    "ef21_top_k": ef21_top_k,
    "marina_perm_k": marina_perm_k,
    "coded": coded_stragglers,
    "sweep_replicas": marina_sweep_replicas,
}
KEY_SEED = 7


def field(trace, name):
    """``trace.<name>`` for dotted names (``bits.container``)."""
    obj = trace
    for part in name.split("."):
        obj = getattr(obj, part)
    return np.asarray(obj)


def run_case(name, **kw):
    from ratedist.sim import run

    (alg, prob), opts = CASES[name]()
    return run(alg, prob, key=jax.random.key(KEY_SEED), **opts, **kw)


def main(out, names, flags=()):
    from ratedist.sim import distributed

    jax.config.update("jax_enable_x64", True)
    lay = distributed.initialize()
    print(f"joined {lay.process_id}/{lay.num_processes} devices={len(lay.devices)}", flush=True)
    saved = {}
    for name in names:
        tr = run_case(name, engine="shard_map", aggregate="gather")
        saved.update({f"{name}/{f}": field(tr, f) for f in FIELDS})
    if "--local-vmap" in flags:
        # a single-device engine inside the job runs on each process's own device
        tr = run_case(names[0], engine="vmap")
        saved.update({f"local_vmap/{f}": field(tr, f) for f in FIELDS})
    if distributed.is_main():
        np.savez(out, n_devices=len(lay.devices), n_processes=lay.num_processes, **saved)


if __name__ == "__main__":
    args = [a for a in sys.argv[2:] if not a.startswith("--")]
    main(sys.argv[1], args or list(CASES), [a for a in sys.argv[2:] if a.startswith("--")])
