"""``ratedist simulate CONFIG.toml [--out DIR]``: run a sweep of simulations, resumably."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ratedist._io import check_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", help="sweep config (TOML), e.g. simulations/ef21_lag_tridiagonal.toml"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="result directory (default: results/<config name> next to the config)",
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar per run")
    parser.add_argument("--dry-run", action="store_true", help="list the expanded configs and exit")


def run(args: argparse.Namespace) -> int:
    # Imported here so that `ratedist --help` does not import JAX.
    import jax

    from ratedist.sim.store import ResultStore, config_hash
    from ratedist.sim.sweep import STAGE_SECTIONS, load_sweep, run_sweep

    configs = load_sweep(args.config)
    cfg_path = Path(args.config)
    out = Path(args.out) if args.out else cfg_path.parent / "results" / cfg_path.stem
    store = ResultStore(out)
    if args.dry_run:
        for cfg in configs:
            state = "done" if store.done(cfg) else "todo"
            stages = "".join(f" {k}={cfg[k]}" for k in STAGE_SECTIONS if k in cfg)
            print(
                f"{config_hash(cfg)} {state} {cfg['algorithm']} on {cfg['problem']}{stages} "
                f"seed={cfg['seed']}"
            )
        return 0
    check_output_dir(out, option="--out" if args.out else "result directory")
    # float64 runs need x64; enable it for this command only (a scoped context, not global).
    need_x64 = any(cfg["dtype"] == "float64" for cfg in configs)
    with jax.enable_x64(need_x64):
        counts = run_sweep(
            configs, out, progress=args.progress, log=lambda s: print(s, file=sys.stderr)
        )
    bad = counts["diverged"]
    note = f" ({bad} DIVERGED: non-finite iterates, see the log)" if bad else ""
    print(
        f"{counts['ran']} run{note}, {counts['skipped']} skipped, {counts['total']} total -> {out}"
    )
    return 0
