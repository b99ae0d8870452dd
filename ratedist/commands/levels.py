"""``ratedist levels``: design a scalar quantizer for a gradient model and print its levels.

Example::

    ratedist levels --source gaussian --bits 3 --method lloyd-max
    ratedist levels --source laplace --scale 0.5 --levels 16 --method tnq --exact --json
    ratedist levels --source gaussian --bits 4 --method ecsq --json   # 4 bits of entropy

Sources and their parameter flags come from :data:`ratedist.sources.SOURCES` (``--scale``,
``--df``, ``--shape`` for the built-in ones; each flag is checked against the parameter's
supported range, named in the error). Budget: exactly one of ``--bits B`` (integer 1..16, ``levels = 2^B``) or ``--levels N``
(integer 2..65536). For ``tnq``/``tuq``, ``N = s + 1`` levels on ``[-alpha, alpha]``. For
``ecsq``, ``--bits B`` is the target output *entropy* and ``--levels N`` caps the number of
cells; both may be given; ``--levels N`` alone targets ``log2 N`` bits of entropy.
``--exact`` switches ``tnq``/``tuq`` from the papers' bound-optimal design to the
exact-error optimum; with any other method it is an error (their designs already minimize
the exact error).

With ``--json`` one object is printed with the keys ``method``, ``source``, ``source_params``,
``levels`` (ascending reconstruction points), ``thresholds``, ``rounding``, ``mse`` (expected
squared error per coordinate under the method's own rounding: deterministic for uniform,
lloyd-max, ecsq, companded; clipping + unbiased stochastic rounding for variance-optimal, tnq,
tuq), ``variance``, ``bias``, ``entropy_bits``, ``rate_bits`` (``log2`` of the number of
levels), ``gap_db``/``gap_bits`` (to the Shannon bound at ``rate_bits``; exact D(R) for
Gaussian, Shannon lower bound otherwise), ``entropy_gap_db``/``entropy_gap_bits`` (at
``entropy_bits``), ``alpha`` (largest level magnitude: the truncation threshold of the
stochastic methods), ``n_levels``, ``probabilities``, ``converged``, ``n_iter``, ``residual``
and, for tnq/tuq, ``form`` (``"bound"`` or ``"exact"``) and ``s``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ratedist._validation import check_real
from ratedist.quantizers import DESIGNS
from ratedist.quantizers import exact as exact_mod
from ratedist.quantizers.evaluate import as_quantizer, design, evaluate
from ratedist.sources import SOURCES, AbstractSource
from ratedist.sources.registry import SourceSpec


def _option_help(option: str) -> str:
    """``--OPTION`` help from the registry: which parameter of which source it sets."""
    uses = []
    for name in SOURCES.names():
        spec = SOURCES.get(name)
        param = spec.options.get(option)
        if param is None:
            continue
        rng = spec.cls.DESIGN_RANGES.get(param, spec.cls.PARAM_RANGES.get(param))
        default = spec.defaults.get(param)
        text = f"{name}: {param}"
        if rng is not None:
            text += f" in {rng}"
        text += f", default {default:g}" if default is not None else ", required"
        uses.append(text)
    return "; ".join(uses)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Choices and parameter flags come from the sources registry at parser-build time, so a
    # source registered later (a plugin, a test) is usable without editing this module.
    parser.add_argument("--source", required=True, choices=SOURCES.names(), help="gradient model")
    for option in SOURCES.option_names():
        parser.add_argument(f"--{option}", type=float, help=_option_help(option))
    parser.add_argument("--bits", type=int, help="bits per coordinate, 1..16 (levels = 2^bits)")
    parser.add_argument("--levels", type=int, help="number of levels, 2..65536")
    parser.add_argument("--method", required=True, choices=DESIGNS.names(), help="design method")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="tnq/tuq: minimize the exact error instead of the papers' bound",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _check_args(args: argparse.Namespace) -> None:
    """One-line errors naming the flag, before any library call."""
    if args.bits is None and args.levels is None:
        raise ValueError("one of --bits or --levels is required")
    if args.bits is not None and not 1 <= args.bits <= 16:
        raise ValueError(f"--bits must be an integer in 1..16, got {args.bits}")
    if args.levels is not None and not 2 <= args.levels <= 65536:
        raise ValueError(f"--levels must be an integer in 2..65536, got {args.levels}")


def _source_options(args: argparse.Namespace) -> dict[str, float | None]:
    return {opt: getattr(args, opt.replace("-", "_"), None) for opt in SOURCES.option_names()}


def _make_source(spec: SourceSpec, options: dict[str, float | None]) -> AbstractSource:
    """The source, with every error naming the flag: ``--df (student-t df) must lie in ...``."""
    given = {opt: v for opt, v in options.items() if v is not None}
    for opt, value in given.items():
        if opt not in spec.options:
            raise ValueError(
                f"--{opt}: source {spec.name!r} does not take it (got {value!r}); it takes "
                + ", ".join(f"--{o}" for o in spec.options)
            )
        param = spec.options[opt]
        flag = f"--{opt}" if param == opt else f"--{opt} ({spec.name} {param})"
        check_real(flag, value)
        # The design range (narrower, where one exists) is the one that matters here.
        design_rng = spec.cls.DESIGN_RANGES.get(param)
        if design_rng is not None:
            design_rng.check(flag, value, purpose="for quantizer design")
        elif (rng := spec.cls.PARAM_RANGES.get(param)) is not None:
            rng.check(flag, value)
    for param in spec.required:
        if spec.option_of(param) not in given:
            raise ValueError(f"source {spec.name!r} requires --{spec.option_of(param)}")
    return spec.from_options(**given)


def _result(args: argparse.Namespace) -> dict[str, Any]:
    _check_args(args)
    source = _make_source(SOURCES.get(args.source), _source_options(args))
    facts = DESIGNS.facts(args.method)
    sol = design(args.method, source, bits=args.bits, levels=args.levels, exact=args.exact)
    q = as_quantizer(sol.value)
    rounding = str(facts["rounding"])
    ev = evaluate(q, source, rounding=rounding)
    probs = (
        exact_mod.deterministic_probabilities(q, source)
        if rounding == "deterministic"
        else exact_mod.stochastic_probabilities(q, source)
    )
    out: dict[str, Any] = {
        "method": args.method,
        "source": args.source,
        "source_params": {k: float(v) for k, v in source.params().items()},
        "rounding": rounding,
        "n_levels": q.n_levels,
        "levels": [float(v) for v in q.levels],
        "thresholds": [float(v) for v in q.thresholds],
        "probabilities": [float(v) for v in probs],
        **{k: float(v) for k, v in ev._asdict().items()},
        "alpha": float(getattr(sol.value, "alpha", q.alpha)),
        "converged": bool(sol.converged),
        "n_iter": int(sol.n_iter),
        "residual": float(sol.residual),
    }
    if facts.get("truncated"):
        out["form"] = str(sol.value.form)
        out["s"] = int(sol.value.s)
    return out


def _table(res: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v:g}" for k, v in res["source_params"].items())
    lines = [
        f"method {res['method']} ({res['rounding']} rounding), source {res['source']}({params})",
        f"levels {res['n_levels']}   rate {res['rate_bits']:.4f} bit   "
        f"entropy {res['entropy_bits']:.4f} bit   alpha {res['alpha']:.6g}",
        f"mse {res['mse']:.10g}  (variance {res['variance']:.4g}, bias {res['bias']:.4g})",
        f"gap to Shannon: {res['gap_db']:.4f} dB / {res['gap_bits']:.4f} bit at the fixed rate, "
        f"{res['entropy_gap_db']:.4f} dB / {res['entropy_gap_bits']:.4f} bit at the entropy",
        f"converged {res['converged']}  iterations {res['n_iter']}  residual {res['residual']:.3g}",
        "",
        f"{'j':>6} {'level':>20} {'threshold (upper)':>20} {'probability':>14}",
    ]
    thr = [*res["thresholds"], math.inf]
    for j, (lv, t, p) in enumerate(zip(res["levels"], thr, res["probabilities"], strict=True)):
        lines.append(f"{j:>6} {lv:>20.12g} {t:>20.12g} {p:>14.6g}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    res = _result(args)
    if args.json:
        json.dump(res, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(_table(res))
    return 0
