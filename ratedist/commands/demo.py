"""``ratedist demo``: the main job on an embedded default, end to end.

1. Optimal quantization levels for a unit Gaussian gradient coordinate at a bit budget
   (every registered design method, exact MSE, output entropy and gap to Shannon).
2. The rate–distortion figure of the run-time compressors on Gaussian gradients
   (closed form and Monte Carlo against the Shannon bound), written as PNG + JSON.
3. The quick theory-vs-simulation table of :mod:`ratedist.validate`.

``--quick`` (a first look in about half the time) uses d = 256, 8 Monte Carlo trials, the
first point of each compressor's default RD sweep and three 3PC checks (constants, GD
identities, pathwise Lyapunov descent); explicit ``--dim``/``--trials`` still win.

``--out`` (default ``ratedist-demo/``) becomes a report directory a newcomer can open:
``report.md`` and ``index.html`` (the same page: what was computed, the levels table, the RD
figure, the validation table, timings, the command that reproduces it) next to the data they
show, ``levels.csv``/``levels.json``, ``rd_gaussian.png``/``rd_gaussian.json``,
``validation.json`` and ``demo.json`` (everything in one record). Every file is written through
a temporary file and ``os.replace``, so an interrupted demo never leaves a half-written result,
and a re-run into the same directory replaces the report (a killed run's temporaries are swept).
Progress goes to stderr, one line per stage (and per validation check) with the seconds
elapsed; the tables go to stdout, and the last line names the report.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import resource
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ratedist._io import atomic_write, check_output_dir, remove_stale_temporaries
from ratedist._validation import check_int
from ratedist.commands._report import to_html, to_markdown
from ratedist.commands.rd import _table
from ratedist.quantizers import DESIGNS
from ratedist.quantizers.evaluate import as_quantizer, design, evaluate, rounding_of
from ratedist.sources import Gaussian
from ratedist.validate.verdicts import VERDICTS

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


# ----------------------------------------------------------------------------- the report
#: Files of the report directory, besides the figure (named in :func:`_rd_section`).
REPORT_FILES = {
    "markdown": "report.md",
    "html": "index.html",
    "levels_csv": "levels.csv",
    "levels_json": "levels.json",
    "rd_json": "rd_gaussian.json",
    "validation_json": "validation.json",
    "record": "demo.json",
}

_LEVELS_COLUMNS = (
    "method",
    "rounding",
    "n_levels",
    "mse",
    "rate_bits",
    "gap_db",
    "entropy_bits",
    "entropy_gap_db",
    "converged",
    "levels",
)


#: How the timings table of the report names the stages of :func:`run`.
_STAGE_LABELS = {
    "levels": "optimal levels",
    "rd": "rate-distortion figure",
    "validate": "theory vs simulation",
}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Progress:
    """One line per stage on stderr, with the seconds elapsed since the demo started."""

    def __init__(self, n_stages: int) -> None:
        self.n = n_stages
        self.i = 0
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._stage: tuple[str, float] | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def stage(self, name: str, label: str) -> None:
        """Start stage ``name`` (its key in the timings), announced as ``label``."""
        self._close()
        self.i += 1
        print(f"[{self.elapsed():6.1f} s] {self.i}/{self.n} {label}", file=sys.stderr, flush=True)
        self._stage = (name, time.perf_counter())

    def note(self, text: str) -> None:
        print(f"{'':10s} {text}", file=sys.stderr, flush=True)

    def _close(self) -> None:
        if self._stage is not None:
            name, t = self._stage
            self.seconds[name] = round(time.perf_counter() - t, 2)
            self._stage = None

    def done(self) -> float:
        self._close()
        return round(self.elapsed(), 2)


def _write_json(path: Path, obj: Any) -> None:
    payload = (json.dumps(obj, indent=1, default=str) + "\n").encode()
    atomic_write(path, lambda fh: fh.write(payload))


def _write_text(path: Path, text: str) -> None:
    payload = text.encode()
    atomic_write(path, lambda fh: fh.write(payload))


def _levels_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_LEVELS_COLUMNS)
    for r in rows:
        w.writerow(
            [
                r["method"],
                r["rounding"],
                len(r["levels"]),
                repr(r["mse"]),
                repr(r["rate_bits"]),
                repr(r["gap_db"]),
                repr(r["entropy_bits"]),
                repr(r["entropy_gap_db"]),
                r["converged"],
                " ".join(repr(v) for v in r["levels"]),
            ]
        )
    return buf.getvalue()


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None or not math.isfinite(float(v)):
        return "-"
    return format(float(v), fmt)


def reproduce_command(args: argparse.Namespace) -> str:
    """The ``ratedist demo`` command line that recomputes this report (sizes as given)."""
    argv = ["ratedist", "demo"]
    if args.quick:
        argv.append("--quick")
    argv += ["--out", str(args.out), "--bits", str(args.bits), "--seed", str(args.seed)]
    if args.dim is not None:
        argv += ["--dim", str(args.dim)]
    if args.trials is not None:
        argv += ["--trials", str(args.trials)]
    if args.skip_validate:
        argv.append("--skip-validate")
    return shlex.join(argv)


def _report_blocks(report: dict[str, Any], figure: str, checks_label: str) -> list[Any]:
    bits, dim, trials = report["bits"], report["dim"], report["trials"]
    mode = "quick" if report["quick"] else "full"
    blocks: list[Any] = [
        ("h1", "ratedist demo report"),
        (
            "p",
            f"A {mode} run of ratedist demo (seed {report['seed']}). It computed (1) the optimal "
            f"{bits}-bit quantizers of a unit Gaussian gradient coordinate with every registered "
            "design method, evaluated exactly; (2) the rate-distortion points of the run-time "
            f"gradient compressors on Gaussian gradients of dimension d = {dim} (closed form and "
            f"a {trials}-trial Monte Carlo estimate) against the Shannon bound; "
            + (
                f"(3) {checks_label} of the theory-vs-simulation suite (ratedist validate)."
                if "validate" in report
                else "(3) no theory-vs-simulation checks (--skip-validate)."
            ),
        ),
        (
            "p",
            "Rates are in bits per coordinate at two layers: fixed = the container a real "
            "implementation sends (log2 n bits per index), entropy = the ideal entropy-coded "
            "size H; each gap to Shannon is taken at its own layer's rate.",
        ),
        ("h2", f"Optimal {bits}-bit levels for N(0, 1)"),
        (
            "table",
            (
                "method",
                "rounding",
                "n",
                "MSE",
                "R fixed (bit)",
                "gap fixed (dB)",
                "H (bit)",
                "gap entropy (dB)",
                "converged",
            ),
            [
                (
                    r["method"],
                    r["rounding"],
                    str(len(r["levels"])),
                    _num(r["mse"], ".6f"),
                    _num(r["rate_bits"], ".4f"),
                    _num(r["gap_db"], ".3f"),
                    _num(r["entropy_bits"], ".4f"),
                    _num(r["entropy_gap_db"], ".3f"),
                    "yes" if r["converged"] else "no",
                )
                for r in report["levels"]
            ],
        ),
        ("p", "The levels themselves are in levels.csv and levels.json."),
        ("h2", "Rate-distortion on Gaussian gradients"),
        ("img", figure, f"rate-distortion points, d = {dim}, {trials} trials"),
        (
            "p",
            f"{len(report['rd_points'])} points (closed form and Monte Carlo distortion, both "
            "bit layers, gap to Shannon) are in rd_gaussian.json.",
        ),
    ]
    if "validate" in report:
        rows = report["validate"]
        counts = Counter(r["verdict"] for r in rows)
        blocks += [
            ("h2", "Theory vs simulation"),
            (
                "p",
                "Each row compares a theoretical value (a bound, or the exact value of an "
                "identity) with its simulated measurement and standard error (SE); details per "
                "row are in validation.json. "
                + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
                + ".",
            ),
            (
                "table",
                ("check", "predicted", "measured", "SE", "verdict"),
                [
                    (
                        r["check"],
                        _num(r["predicted"]),
                        _num(r["measured"]),
                        _num(r["error"]),
                        r["verdict"],
                    )
                    for r in rows
                ],
            ),
        ]
    t = report["timings"]
    blocks += [
        ("h2", "Timings"),
        (
            "table",
            ("stage", "wall (s)"),
            [(_STAGE_LABELS.get(name, name), f"{s:.1f}") for name, s in t["stages"].items()]
            + [("total", f"{t['wall_s']:.1f}")],
        ),
        ("p", f"CPU time (user + system, all threads and subprocesses): {t['cpu_s']:.1f} s."),
        ("h2", "Reproduce"),
        ("code", report["command"]),
        ("h2", "Files"),
        (
            "links",
            [
                ("levels.csv — the levels table", REPORT_FILES["levels_csv"]),
                ("levels.json — the levels table with every level", REPORT_FILES["levels_json"]),
                ("rd_gaussian.png — the rate-distortion figure", figure),
                ("rd_gaussian.json — its points", REPORT_FILES["rd_json"]),
            ]
            + (
                [("validation.json — the validation table", REPORT_FILES["validation_json"])]
                if "validate" in report
                else []
            )
            + [("demo.json — everything above in one record", REPORT_FILES["record"])],
        ),
    ]
    return blocks


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
    remove_stale_temporaries(out)
    cpu0 = _cpu_seconds()
    progress = _Progress(3 if args.skip_validate else 4)
    report: dict[str, Any] = {
        "bits": bits,
        "dim": dim,
        "trials": trials,
        "seed": seed,
        "quick": bool(args.quick),
        "command": reproduce_command(args),
    }

    progress.stage("levels", f"optimal {bits}-bit levels")
    text, report["levels"] = _levels_section(bits)
    print(text, end="\n\n", flush=True)

    progress.stage("rd", f"rate-distortion figure (d = {dim}, {trials} trials)")
    text, report["rd_points"] = _rd_section(dim, trials, seed, out, size["per_compressor"])
    print(
        "Rate-distortion on Gaussian gradients (fixed = container bits, entropy = ideal "
        f"entropy-coded bits; figure: {out / 'rd_gaussian.png'})"
    )
    print(text, end="\n\n", flush=True)

    checks = size["checks"]
    checks_label = (
        "the whole quick suite" if checks is None else f"{len(checks)} checks ({', '.join(checks)})"
    )
    if not args.skip_validate:
        from ratedist.validate import format_table, run_checks

        progress.stage("validate", f"theory vs simulation: {checks_label}")
        seen: set[str] = set()

        def on_result(r: Any) -> None:
            # all rows of a check arrive together once it has finished: one line per check
            family = r.check.split("[", 1)[0]
            if family not in seen:
                seen.add(family)
                progress.note(f"{family} {r.detail.rsplit('[', 1)[-1].rstrip(']')}")

        results = run_checks(
            checks,
            quick=True,
            on_result=on_result,
        )
        report["validate"] = [r.as_dict() for r in results]
        print(f"Theory vs simulation ({checks_label})")
        print(format_table(results), end="\n\n")

    progress.stage("report", "report")
    report["seconds"] = progress.elapsed()
    report["timings"] = {
        "stages": progress.seconds,
        "wall_s": round(progress.elapsed(), 2),
        "cpu_s": round(_cpu_seconds() - cpu0, 2),
    }
    _write_text(out / REPORT_FILES["levels_csv"], _levels_csv(report["levels"]))
    _write_json(out / REPORT_FILES["levels_json"], report["levels"])
    _write_json(out / REPORT_FILES["rd_json"], report["rd_points"])
    validation = out / REPORT_FILES["validation_json"]
    if "validate" in report:
        _write_json(validation, report["validate"])
    else:  # a re-run without checks must not leave an earlier run's table in the report
        validation.unlink(missing_ok=True)
    _write_json(out / REPORT_FILES["record"], report)
    blocks = _report_blocks(report, "rd_gaussian.png", checks_label)
    _write_text(out / REPORT_FILES["markdown"], to_markdown(blocks))
    _write_text(out / REPORT_FILES["html"], to_html(blocks, title="ratedist demo report"))
    total = progress.done()
    print(f"[{total:6.1f} s] done", file=sys.stderr, flush=True)
    print(f"report: {out / REPORT_FILES['markdown']} (also {out / REPORT_FILES['html']})")
    return 0
