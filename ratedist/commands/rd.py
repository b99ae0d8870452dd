"""``ratedist rd``: operational rate–distortion points of compressors on Gaussian gradients.

Example::

    ratedist rd --source gaussian --dim 1000 --compressor top-k:k=10 qsgd:s=4 --json
    ratedist rd --dim 1000 --all --trials 200 --plot rd.png

With ``--json`` one object is printed: ``{"source", "dim", "sigma", "trials", "seed",
"float_bits", "points": [...]}``; each point has ``compressor``, ``params``, ``rate_bits``
(container layer, bits per coordinate), ``entropy_rate_bits``, ``distortion`` (closed form,
normalized by sigma^2; null where none), ``distortion_mc``, ``distortion_mc_se``,
``shannon_distortion`` (at ``rate_bits``), ``gap_db`` and ``gap_bits``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ratedist._io import atomic_write, check_output_file
from ratedist._validation import check_choice, check_int, check_positive

_SOURCES = ("gaussian",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", default="gaussian", help="gradient model (only 'gaussian'; default)"
    )
    parser.add_argument("--dim", type=int, required=True, help="dimension d of the gradient")
    parser.add_argument("--sigma", type=float, default=1.0, help="coordinate std (default 1)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--compressor",
        nargs="+",
        metavar="SPEC",
        help="compressor specs such as top-k:k=10 qsgd:s=4 lattice:name=e8 "
        "(lattice:name= is an alias of lattice:lattice=)",
    )
    group.add_argument(
        "--all", action="store_true", help="every registered compressor, default parameters"
    )
    parser.add_argument(
        "--trials", type=int, default=100, help="Monte Carlo trials (0: closed form only)"
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    parser.add_argument(
        "--float-bits",
        type=int,
        default=32,
        help="width of side-information floats for compressors that take float_bits "
        "(unless the spec sets it; default 32)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the RD plot to this file")


#: Parameter aliases accepted on the command line: ``lattice:name=e8`` = ``lattice:lattice=e8``.
_ALIASES: dict[str, dict[str, str]] = {"lattice": {"name": "lattice"}}


def _compressor(spec: str, float_bits: int) -> Any:
    """The compressor of a ``--compressor`` spec; errors quote the spec as the user typed it.

    ``float_bits`` goes to compressors that take it unless the spec sets it.
    """
    # Loaded here, not at the top: the compressors import JAX, which `ratedist rd --help`
    # and argument errors should not wait for.
    from ratedist.compressors import COMPRESSORS, make, parse_spec

    name = spec.partition(":")[0].strip()
    name, params = parse_spec(spec, aliases=_ALIASES.get(name))
    if "float_bits" in COMPRESSORS.facts(name).get("params", {}) and "float_bits" not in params:
        params["float_bits"] = float_bits
    return make(name, **params)


def _specs(args: argparse.Namespace, operational: Any) -> list[str]:
    if args.all:
        return [s for specs in operational.default_specs().values() for s in specs]
    if not args.compressor:
        raise ValueError("give --compressor SPEC ... or --all")
    return list(args.compressor)


def _has_closed_rate(operational: Any, comp: Any, dim: int, sigma: float) -> bool:
    cf = operational.closed_form(comp, dim, sigma=sigma)
    return cf is not None and cf.rate_bits is not None


def _fmt(v: Any, spec: str) -> str:
    if v is None:
        return "-".rjust(int(spec.split(".")[0]))
    return format(v, spec)


def _label(p: Any) -> str:
    params = p.params or {}
    if "method" in params:  # designed scalar quantizers: the design says more than levels
        keys = [k for k in ("method", "bits", "n_levels", "entropy_bits") if k in params]
    else:
        keys = [k for k, v in params.items() if not isinstance(v, list)]
    body = ",".join(f"{k}={params[k]}" for k in keys)
    return f"{p.compressor}:{body}" if body else p.compressor


def _entropy_gap_db(p: Any) -> float | None:
    """``10 log10(D / 2^(-2H))`` at the entropy-layer rate (D closed form, else MC)."""
    d = p.distortion if p.distortion is not None else p.distortion_mc
    if p.entropy_rate_bits is None or d is None or d <= 0:
        return None
    return 10.0 * math.log10(d) + 20.0 * math.log10(2.0) * p.entropy_rate_bits


def _table(points: list[Any]) -> str:
    """One row per point; every rate and gap column names its bit layer: ``fixed`` =
    container (wire) bits, ``H`` / ``entropy`` = ideal entropy-coded bits."""
    head = (
        f"{'compressor':40s} {'R fixed (bit)':>13s} {'H (bit)':>8s} {'D closed':>10s} "
        f"{'D MC':>10s} {'SE':>9s} {'D Sh(R fixed)':>13s} {'gap fixed (dB)':>14s} "
        f"{'gap fixed (bit)':>15s} {'gap entropy (dB)':>16s}"
    )
    lines = [head, "-" * len(head)]
    for p in points:
        lines.append(
            f"{_label(p)[:40]:40s} {p.rate_bits:13.4f} {_fmt(p.entropy_rate_bits, '8.4f')} "
            f"{_fmt(p.distortion, '10.5f')} {_fmt(p.distortion_mc, '10.5f')} "
            f"{_fmt(p.distortion_mc_se, '9.2e')} {p.shannon_distortion:13.3e} "
            f"{_fmt(p.gap_db, '14.2f')} {_fmt(p.gap_bits, '15.3f')} "
            f"{_fmt(_entropy_gap_db(p), '16.2f')}"
        )
    return "\n".join(lines)


def _check_plot_path(path: str) -> None:
    """``--plot``: a writable regular file whose suffix matplotlib can write (none: PNG)."""
    check_output_file(path, option="--plot")
    suffix = Path(path).suffix[1:].lower()
    if suffix:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if suffix not in formats:
            raise ValueError(
                f"--plot {path!r}: matplotlib cannot write {suffix!r} files; "
                f"use one of {', '.join(sorted(formats))}"
            )


def run(args: argparse.Namespace) -> int:
    check_choice("source", args.source, _SOURCES)
    dim = check_int("dim", args.dim, min_value=1)
    sigma = check_positive("sigma", args.sigma)
    trials = check_int("trials", args.trials, min_value=0)
    if trials == 1:
        raise ValueError("trials must be 0 (closed form only) or >= 2, got 1")
    seed = check_int("seed", args.seed, min_value=0)
    float_bits = check_int("float_bits", args.float_bits, min_value=1, max_value=64)
    if args.plot is not None:  # before the work, which an unwritable path would lose
        _check_plot_path(args.plot)
    # Loaded here, not at the top: the closed forms pull in scipy.stats (about 1 s), which
    # `ratedist --help` and argument errors should not pay for.
    import jax

    from ratedist.rd import operational

    # Every spec is validated before any work.
    comps = [_compressor(s, float_bits) for s in _specs(args, operational)]
    if trials == 0 and args.all:
        # Closed forms only: leave out what has no closed-form container rate (lattices).
        kept = [c for c in comps if _has_closed_rate(operational, c, dim, sigma)]
        skipped = sorted({c.facts.name for c in comps} - {c.facts.name for c in kept})
        if skipped:
            print(f"ratedist rd: no closed form, skipped: {', '.join(skipped)}", file=sys.stderr)
        comps = kept
    key = jax.random.key(seed)
    points = []
    for i, comp in enumerate(comps):
        points.append(
            operational.rd_point(
                comp, dim, trials=trials, key=jax.random.fold_in(key, i), sigma=sigma
            )
        )
    if args.plot:
        from ratedist.plotting import rd_figure

        fig = rd_figure(points, rate_cap=10.0, title=f"Gaussian gradients, d = {dim}")
        fmt = Path(args.plot).suffix[1:].lower() or "png"
        atomic_write(Path(args.plot), lambda fh: fig.savefig(fh, format=fmt, dpi=150))
    if args.json:
        out = {
            "source": args.source,
            "dim": dim,
            "sigma": sigma,
            "trials": trials,
            "seed": seed,
            "float_bits": float_bits,
            "points": [p.to_json() for p in points],
        }
        json.dump(out, sys.stdout, indent=1, allow_nan=False)
        print()
    else:
        print(_table(points))
    return 0
