"""``python3 -m ratedist.sim.launch --num-processes 2 --local-devices 4 -- SCRIPT [ARGS]``: run
a script (or ``-m module``) as a local multi-process JAX job over the loopback address
(:func:`ratedist.sim.distributed.launch`); the script calls
:func:`ratedist.sim.distributed.initialize`.

A module of its own so that ``python -m`` never runs a module the package has already
imported (:mod:`ratedist.sim` loads :mod:`ratedist.sim.distributed`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ratedist.sim.distributed import launch


def main(args: Sequence[str] | None = None) -> int:
    """``python3 -m ratedist.sim.launch --num-processes 2 --local-devices 4 -- SCRIPT``."""
    parser = argparse.ArgumentParser(
        prog="python3 -m ratedist.sim.launch",
        description="Run a Python script as a local multi-process JAX job (loopback "
        "coordinator); the script calls ratedist.sim.distributed.initialize().",
    )
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument(
        "--local-devices", type=int, default=None, help="emulated CPU devices per process"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds, then kill all")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...]")
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    try:
        status = launch(argv, ns.num_processes, local_devices=ns.local_devices, timeout=ns.timeout)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status if status >= 0 else 128 - status  # killed by signal s: 128 + s, as a shell


if __name__ == "__main__":
    sys.exit(main())
