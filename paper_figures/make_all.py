"""Regenerate every figure of paper_figures/ (see paper_figures/README.md).

Runs each script of :data:`SCRIPTS` in its own Python process from the repository root, in
order, and prints its wall time; stops at the first failure (its exit status is returned).

Usage::

    python paper_figures/make_all.py                 # every figure
    python paper_figures/make_all.py --fast          # only those under a minute or two
    python paper_figures/make_all.py gradient_qq rd_gaussian   # these, by name
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: script name -> slow (several minutes on 2 cores).
SCRIPTS = {
    "rd_gaussian": True,
    "convergence_3pc": True,
    "gradient_coding": True,
    "quantized_adam": False,
    "tnqsgd_training": True,
    "truncation_threshold": False,
    "gradient_qq": False,
    "real_gradient_rd": False,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"figures to make (default all): {', '.join(SCRIPTS)}")
    p.add_argument("--fast", action="store_true", help="skip the slow ones")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in SCRIPTS]
    if unknown:
        p.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
    names = args.names or [n for n, slow in SCRIPTS.items() if not (args.fast and slow)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for name in names:
        t0 = time.time()
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py")], cwd=ROOT, env=env)
        print(f"== {name}: exit {rc}, {time.time() - t0:.0f} s", flush=True)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
