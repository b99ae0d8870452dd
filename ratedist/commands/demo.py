"""``ratedist demo``: the main job on an embedded default, end to end.

1. Optimal quantization levels for a unit Gaussian gradient coordinate at a bit budget
   (every registered design method, exact MSE, output entropy and gap to Shannon).
2. The rate–distortion figure of the run-time compressors on Gaussian gradients
   (closed form and Monte Carlo against the Shannon bound), written as PNG + JSON.
3. The quick theory-vs-simulation table of :mod:`ratedist.validate`.

``--quick`` (a first look in about half the time) uses d = 256, 8 Monte Carlo trials, the
first point of each compressor's default RD sweep and three 3PC checks (constants, GD
identities, pathwise Lyapunov descent); explicit ``--dim``/``--trials`` still win.

Everything is written under ``--out`` (default ``ratedist-demo/``) through a temporary file
and ``os.replace``, so an interrupted demo never leaves a half-written result.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ratedist._io import atomic_write, check_output_dir
from ratedist._validation import check_int
from ratedist.commands.rd import _table
from ratedist.quantizers import DESIGNS
from ratedist.quantizers.evaluate import as_quantizer, design, evaluate, rounding_of
from ratedist.sources import Gaussian

#: Sizes of the full demo and of ``--quick``: dimension, Monte Carlo trials, RD points per
#: compressor (None: its whole default sweep), validate checks (None: the whole quick suite of
#: :func:`ratedist.validate.run_checks`).
SIZES = {
    "full": {"dim": 1000, "trials": 32, "per_compressor": None, "checks": None},
    "quick": {
        "dim": 256,
        "trials": 8,
        "per_compressor": 1,
        "checks": ("3pc_constants", "gd_identities", "lyapunov_pathwise"),
    },
}

#: x-axis limit of the demo's RD figure (bits per coordinate); points beyond are listed on it.
DEMO_RATE_CAP = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="ratedist-demo", help="output folder (default ratedist-demo)"
    )
    parser.add_argument("--bits", type=int, default=3, help="bit budget of the designs (default 3)")
    parser.add_argument(
        "--dim", type=int, default=None, help="gradient dimension d >= 256 (default 1000)"
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="Monte Carlo trials per RD point (default 32)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a first look: d = 256, 8 trials, one RD point per compressor, three 3PC checks",
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    parser.add_argument("--skip-validate", action="store_true", help="skip the simulation table")


def _levels_section(bits: int) -> tuple[str, list[dict[str, Any]]]:

    src = Gaussian(1.0)
    rows = []
    for method in DESIGNS.names():
        sol = design(method, src, bits=bits)
        q = as_quantizer(sol.value)
        ev = evaluate(q, src, rounding=rounding_of(method))
        rows.append(
            {
                "method": method,
                "rounding": rounding_of(method),
                "levels": [float(v) for v in q.levels],
                "mse": float(ev.mse),
                "entropy_bits": float(ev.entropy_bits),
                "rate_bits": float(ev.rate_bits),
                "gap_db": float(ev.gap_db),
                "entropy_gap_db": float(ev.entropy_gap_db),
                "converged": bool(sol.converged),
            }
        )
    # Both bit layers, named: the fixed-rate container (log2 n bits per index) and the
    # entropy-coded size (output entropy H); each gap is taken at its own layer's rate.
    head = (
        f"{'method':17s} {'rounding':13s} {'n':>4s} {'MSE':>10s} {'R fixed (bit)':>13s} "
        f"{'gap fixed (dB)':>14s} {'H (bit)':>8s} {'gap entropy (dB)':>16s}"
    )
    lines = [
        f"Optimal {bits}-bit quantizers for a N(0, 1) gradient coordinate "
        "(fixed: log2 n bits per index; entropy: ideal entropy-coded size H)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        lines.append(
            f"{r['method']:17s} {r['rounding']:13s} {len(r['levels']):4d} {r['mse']:10.6f} "
            f"{r['rate_bits']:13.4f} {r['gap_db']:14.3f} {r['entropy_bits']:8.4f} "
            f"{r['entropy_gap_db']:16.3f}"
        )
    lm = next(r for r in rows if r["method"] == "lloyd-max")
    lines.append("Lloyd-Max levels: " + " ".join(f"{v:+.4f}" for v in lm["levels"]))
    return "\n".join(lines), rows


def _rd_section(
    dim: int, trials: int, seed: int, out: Path, per_compressor: int | None = None
) -> tuple[str, list[dict[str, Any]]]:
    import jax

    from ratedist.plotting import rd_figure
    from ratedist.rd.operational import default_specs, rd_point

    specs = [s for group in default_specs().values() for s in group[:per_compressor]]
    key = jax.random.key(seed)
    points = [
        rd_point(s, dim, trials=trials, key=jax.random.fold_in(key, i)) for i, s in enumerate(specs)
    ]
    fig = rd_figure(
        points,
        rate_cap=DEMO_RATE_CAP,
        title=f"Gaussian gradients, d = {dim}, {trials} trials",
    )
    atomic_write(
        out / "rd_gaussian.png",
        lambda fh: fig.savefig(fh, format="png", dpi=120, bbox_inches="tight"),
    )
    return _table(points), [p.to_json() for p in points]


def run(args: argparse.Namespace) -> int:

    size = SIZES["quick" if args.quick else "full"]
    bits = check_int("bits", args.bits, min_value=1, max_value=8)
    # The default RD parameter sets keep up to K = 200 coordinates.
    dim = check_int("dim", size["dim"] if args.dim is None else args.dim, min_value=256)
    trials = check_int(
        "trials", size["trials"] if args.trials is None else args.trials, min_value=2
    )
    seed = check_int("seed", args.seed, min_value=0)
    out = check_output_dir(args.out, option="--out")
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "bits": bits,
        "dim": dim,
        "trials": trials,
        "seed": seed,
        "quick": bool(args.quick),
    }

    text, report["levels"] = _levels_section(bits)
    print(text, end="\n\n", flush=True)

    text, report["rd_points"] = _rd_section(dim, trials, seed, out, size["per_compressor"])
    print(
        "Rate-distortion on Gaussian gradients (fixed = container bits, entropy = ideal "
        f"entropy-coded bits; figure: {out / 'rd_gaussian.png'})"
    )
    print(text, end="\n\n", flush=True)

    if not args.skip_validate:
        from ratedist.validate import format_table, run_checks

        results = run_checks(size["checks"], quick=True)
        report["validate"] = [r._asdict() for r in results]
        print(f"Theory vs simulation ({'three 3PC checks' if args.quick else 'quick suite'})")
        print(format_table(results), end="\n\n")

    report["seconds"] = round(time.perf_counter() - t0, 2)
    payload = json.dumps(report, indent=1, default=str).encode()
    atomic_write(out / "demo.json", lambda fh: fh.write(payload))
    print(f"wrote {out / 'demo.json'} and {out / 'rd_gaussian.png'} in {report['seconds']} s")
    return 0
