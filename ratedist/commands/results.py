"""``ratedist results DIR [--steps final|all] [--every K] [--csv [FILE]] [--parquet FILE]``:
a sweep's result directory as one tidy table (:mod:`ratedist.sim.results`)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ratedist._io import atomic_write, check_output_file

#: what ``--steps`` takes: ratedist.sim.results.STEP_CHOICES, spelled here so that the
#: parser is built without importing JAX (a test keeps the two equal)
_STEPS = ("final", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a result directory (ratedist simulate --out)")
    parser.add_argument(
        "--steps",
        choices=_STEPS,
        default="final",
        help="final: one row per run and replica (default); all: one row per step",
    )
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="K",
        help="with --steps all: every K-th step (and the last)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        "--csv",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="write CSV to FILE (to stdout without FILE)",
    )
    out.add_argument("--parquet", default=None, metavar="FILE", help="write Parquet to FILE")


def run(args: argparse.Namespace) -> int:
    # Imported here so that `ratedist --help` does not import JAX.
    from ratedist.sim.results import load_results

    if args.csv not in (None, "-"):
        check_output_file(args.csv, option="--csv")
    if args.parquet is not None:
        check_output_file(args.parquet, option="--parquet")
        _require_parquet()
    df = load_results(args.directory, steps=args.steps, every=args.every)
    if args.csv == "-":
        df.to_csv(sys.stdout, index=False)
    elif args.csv is not None:
        atomic_write(args.csv, lambda fh: df.to_csv(fh, index=False))
    elif args.parquet is not None:
        atomic_write(args.parquet, lambda fh: df.to_parquet(fh, index=False))
    else:
        runs = df["hash"].nunique()
        print(f"{runs} run{'s' if runs != 1 else ''}, {len(df)} rows, {df.shape[1]} columns")
        print(df.to_string(max_rows=40, max_cols=12, index=False))
    return 0


def _require_parquet() -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise ValueError("--parquet needs pyarrow: pip install 'ratedist[cluster]'")
