"""``ratedist validate [--quick] [--json] [--check NAME ...]``: the theory-vs-simulation table."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (CI; under a minute on 2 cores)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of objects with keys check, predicted, measured, error, "
        "verdict, detail",
    )
    parser.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help="run only this check (repeatable); see --list",
    )
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when any check is violated",
    )


def run(args: argparse.Namespace) -> int:
    from ratedist.validate import CHECKS, format_table, run_checks, to_json

    if args.list:
        for name in CHECKS.names():
            facts = CHECKS.facts(name)
            flag = "" if facts["quick"] else "  (full only)"
            print(f"{name:20s} {facts['summary']}{flag}")
        return 0
    if args.seed < 0:
        raise ValueError(f"seed must be >= 0, got {args.seed}")
    stream = None
    if not args.json:

        def stream(r):
            print(f"  {r.check}: {r.verdict}", file=sys.stderr, flush=True)

    rows = run_checks(args.check, quick=args.quick, seed=args.seed, on_result=stream)
    print(to_json(rows) if args.json else format_table(rows))
    if args.strict and any(r.verdict == "violated" for r in rows):
        return 1
    return 0
