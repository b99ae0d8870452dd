"""Print one line per finished run of a results directory written by `ratedist simulate`.

Usage: python simulations/summarize.py RESULTS_DIR [--bits container|entropy]
"""

from __future__ import annotations

import argparse

import numpy as np

from ratedist.sim.store import ResultStore
from ratedist.sim.sweep import STAGE_SECTIONS, problem_labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--bits", default="container", choices=["container", "entropy"])
    args = ap.parse_args(argv)
    rows = []
    results = list(ResultStore(args.results))
    # Labels from the configs: the problem's own name is shared by several constructors.
    labels = problem_labels([cfg.get("problem", {}) for _, cfg, _ in results])
    for (tr, cfg, meta), label in zip(results, labels, strict=True):
        # a gradient code, stragglers or aggregation tell runs of one problem apart too
        label = " ".join([label, *(str(meta.get(k, cfg[k])) for k in STAGE_SECTIONS if k in cfg)])
        bits = tr.bits.total(args.bits)
        rows.append(
            (
                label,
                meta.get("algorithm", "?"),
                cfg.get("seed"),
                tr.gamma,
                float(np.ravel(tr.grad_norm_sq)[-1]),
                float(np.mean(bits[..., -1, :])),
                int(np.sum(tr.violations)),
                int(np.max(tr.diverged_at)),
            )
        )
    w = max([24, *(len(r[0]) for r in rows)])
    print(
        f"{'problem':{w}} {'algorithm':48} {'seed':>4} {'gamma':>9} {'|grad|^2 end':>12} "
        f"{'Mbit/worker':>11} {'viol':>4} {'div':>4}"
    )
    for p, a, s, g, gn, b, v, dv in sorted(rows):
        print(f"{p:{w}} {a:48} {s:4d} {g:9.3g} {gn:12.3e} {b / 1e6:11.3f} {v:4d} {dv:4d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
