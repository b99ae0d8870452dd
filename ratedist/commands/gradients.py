"""``ratedist gradients``: capture the gradients of a small model, and fit models to them.

Examples::

    ratedist gradients capture --model mlp-digits --steps 0,100,1000 --out grads/mlp
    ratedist gradients fit grads/mlp                 # a table per step: one row per layer
    ratedist gradients fit grads/mlp --step 100 --json
    ratedist gradients design grads/mlp --step 100 --bits 2,3,4

``capture`` trains ``--model`` (one of :data:`ratedist.gradients.models.MODELS`) with
``--optimizer`` (``adam``/``sgd``, ``--lr``) on minibatches of ``--batch-size`` and records,
at each of ``--steps``, the full-batch gradient and ``--minibatches`` minibatch gradients of
every layer into ``--out`` (one atomic ``.npz`` per step and ``manifest.json``). A rerun
with the same options skips the steps already on disk; other options in the same directory
are refused. ``--out`` is checked before training.

``fit`` reads such a directory and prints, per step and layer, the family of least AIC
(``gaussian``, ``laplace``, ``student-t``, ``gen-gaussian``, ``power-law``; ``--empirical``
adds the KDE), its parameters ± standard errors, the KS statistic, ΔAIC to the runner-up and
Hill's tail index of ``|g|`` with its ``k``. ``--samples`` picks what is fitted: the pooled
coordinates of the minibatch gradients (default), of the full-batch gradient, or their
difference (the gradient noise). Exact zeros are dropped and counted; the location is
fixed at 0 (docs/gradients.md says why). A layer that cannot be fitted (too few nonzero
samples, constant, NaN/inf) is reported in its row and as a warning; the others are fitted.

With ``--json`` one object is printed: ``directory``, ``model``, ``samples``, ``manifest``
and ``steps``, a list of ``{"step", "metrics", "layers": {name: fit or {"error": ...}}}``
where a fit is :meth:`ratedist.gradients.fit.BestFit.to_dict` (``best``, ``runner_up``,
``delta_aic``, ``tail``, ``summary`` and every family's ``params``, ``stderr``, ``loglik``,
``aic``, ``ks``, ``at_bound``, ``note``; ``--qq`` adds the QQ quantiles).

``design`` fits the best model to the first half of each layer's minibatch gradients
(normalised by their RMS), designs every registered quantizer (``--methods``) at each of
``--bits`` on it, and prints per layer the MSE the model predicts, the MSE measured on the
held-out half ± SE, the *model cost* ``10 log10(measured/predicted)`` dB, the held-out
MSE of the same method designed on the empirical law (a KDE) of the fitting half, and the
output entropy (model vs held-out)
(``--no-empirical`` skips it: it is most of the run time). See
:mod:`ratedist.gradients.design`. ``--json`` prints ``{"directory", "model", "bits",
"steps": [{"step", "layers": {name: LayerDesign.to_dict() or {"error": ...}}}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

from ratedist._io import check_output_dir
from ratedist._registry import Registry
from ratedist._validation import check_int, check_positive
from ratedist.gradients.capture import (
    OPTIMIZERS,
    SAMPLE_KINDS,
    Capture,
    capture_gradients,
    load_capture,
    parse_steps,
)
from ratedist.gradients.design import (
    DEFAULT_BITS,
    LayerDesign,
    LayerResult,
    applicable_methods,
    design_capture,
)
from ratedist.gradients.fit import (
    EMPIRICAL_MAX_CENTRES,
    MIN_SAMPLES,
    BestFit,
    LayerFit,
    fit_capture,
    parametric_families,
)
from ratedist.gradients.models import MODELS
from ratedist.quantizers import DESIGNS


class Action(NamedTuple):
    """One ``ratedist gradients ACTION``: its help, its arguments and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------------- capture
def _capture_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        choices=MODELS.names(),
        help="; ".join(f"{n}: {MODELS.get(n).description}" for n in MODELS.names()),
    )
    p.add_argument(
        "--steps",
        required=True,
        help="comma-separated capture steps (updates made), e.g. 0,100,1000",
    )
    p.add_argument("--out", required=True, help="store directory (created; reruns resume)")
    p.add_argument(
        "--minibatches", type=int, default=16, help="minibatch gradients per step (default 16)"
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="examples per minibatch, training too (32)"
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation, batches (default 0)")
    p.add_argument("--optimizer", choices=OPTIMIZERS.names(), default="adam", help="(adam)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _check_capture_args(args: argparse.Namespace) -> None:
    """One-line errors naming the flag, before any work."""
    n_train = int(MODELS.get(args.model).data().x_train.shape[0])
    check_int("--minibatches", args.minibatches, min_value=1, max_value=4096)
    check_int("--batch-size", args.batch_size, min_value=1, max_value=n_train)
    check_int("--seed", args.seed, min_value=0, max_value=2**32 - 1)
    check_positive("--lr", args.lr)


def _run_capture(args: argparse.Namespace) -> int:
    steps = parse_steps(args.steps)
    _check_capture_args(args)
    out = check_output_dir(args.out, option="--out")

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr)

    rep = capture_gradients(
        args.model,
        steps,
        out,
        minibatches=args.minibatches,
        batch_size=args.batch_size,
        seed=args.seed,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        log=log,
    )
    again = f" ({len(rep.recaptured)} unreadable, recaptured)" if rep.recaptured else ""
    print(
        f"captured {len(rep.captured)} step(s){again}, skipped {len(rep.skipped)} already "
        f"on disk -> {rep.directory} ({rep.seconds:.1f} s)"
    )
    return 0


# ----------------------------------------------------------------------------- fit
def _fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="a store written by `ratedist gradients capture`")
    p.add_argument("--step", type=int, default=None, help="fit this step only (default all)")
    p.add_argument(
        "--samples",
        choices=SAMPLE_KINDS.names(),
        default="minibatch",
        help="; ".join(f"{n}: {SAMPLE_KINDS.facts(n)['help']}" for n in SAMPLE_KINDS.names())
        + " (default minibatch)",
    )
    p.add_argument(
        "--empirical",
        action="store_true",
        help=f"also rank the empirical KDE (on at most {EMPIRICAL_MAX_CENTRES} centres; slower)",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        default=200_000,
        help="fit a random subset of at most this many samples per layer (default 200000)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--qq", action="store_true", help="with --json: add the QQ quantiles")


def _fmt_param(value: Any, se: float | None) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4g}" if se is None else f"{value:.4g}±{se:.2g}"


def _row(lf: LayerFit, shape: tuple[int, ...]) -> str:
    head = f"  {lf.layer:<14} {shape!s:<14}"
    if lf.result is None:
        return f"{head} error: {lf.error}"
    b: BestFit = lf.result
    params = " ".join(
        f"{k}={_fmt_param(v, b.best.stderr.get(k))}" for k, v in b.best.params.items()
    )
    if b.best.at_bound:
        params += " (at bound)"
    zeros = b.summary.n_zeros / b.summary.n_total
    delta = "-" if b.delta_aic is None else f"{b.delta_aic:.1f}"
    runner = "-" if b.runner_up is None else b.runner_up.family
    tail = f"{b.tail.tail_index:.3g}±{b.tail.stderr:.2g} ({b.tail.k})"
    return (
        f"{head} {b.summary.n_used:>7} {zeros:>6.1%} {b.summary.mean_over_sd:>+7.3f}  "
        f"{b.best.family:<13} {params:<44} {b.best.ks:>7.4f} {delta:>8} {runner:<13} {tail}"
    )


def _table(cap: Capture, fits: list[LayerFit], kind: str) -> str:
    m = cap.manifest
    lines = [
        f"{m['model']}: {kind} gradient samples, {m['minibatches']} minibatches of "
        f"{m['batch_size']}, {m['optimizer']} lr {m['learning_rate']:g}, seed {m['seed']} "
        f"({cap.directory})",
        "location fixed at 0, exact zeros dropped; best = least AIC; tail = Hill index of "
        "|g| ± SE (k)",
    ]
    shapes = cap.layers
    for step, sg in cap.steps.items():
        mt = sg.metrics
        lines += [
            "",
            f"step {step}: train loss {mt['train_loss']:.4g}, test loss {mt['test_loss']:.4g}, "
            f"test accuracy {mt['test_accuracy']:.3f}",
            f"  {'layer':<14} {'shape':<14} {'n used':>7} {'zeros':>6} {'mean/sd':>7}  "
            f"{'best':<13} {'parameters ± SE':<44} {'KS':>7} {'dAIC':>8} {'runner-up':<13} "
            "tail index",
        ]
        lines += [_row(lf, shapes[lf.layer]) for lf in fits if lf.step == step]
    return "\n".join(lines)


def _json(cap: Capture, fits: list[LayerFit], kind: str, qq: bool) -> dict[str, Any]:
    steps = []
    for step, sg in cap.steps.items():
        layers = {
            lf.layer: {"error": lf.error} if lf.result is None else lf.result.to_dict(qq=qq)
            for lf in fits
            if lf.step == step
        }
        steps.append({"step": step, "metrics": dict(sg.metrics), "layers": layers})
    return {
        "directory": str(cap.directory),
        "model": cap.manifest["model"],
        "samples": kind,
        "manifest": dict(cap.manifest),
        "steps": steps,
    }


def _run_fit(args: argparse.Namespace) -> int:
    if args.qq and not args.json:
        raise ValueError("--qq needs --json")
    if args.step is not None and args.step < 0:
        raise ValueError(f"--step must be >= 0, got {args.step}")
    check_int("--max-samples", args.max_samples, min_value=MIN_SAMPLES)
    cap = load_capture(args.directory, steps=None if args.step is None else [args.step])
    if cap.missing_steps:
        warnings.warn(
            f"steps {', '.join(map(str, cap.missing_steps))} of the manifest are not captured "
            "(an interrupted capture? rerun it to complete them)",
            stacklevel=1,
        )
    families = [*parametric_families(), *(["empirical"] if args.empirical else [])]
    fits = fit_capture(cap, kind=args.samples, families=families, max_samples=args.max_samples)
    for lf in fits:
        if lf.error is not None:
            warnings.warn(f"not fitted: {lf.error}", stacklevel=1)
    if args.json:
        json.dump(_json(cap, fits, args.samples, args.qq), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(_table(cap, fits, args.samples))
    return 0


# ----------------------------------------------------------------------------- design
def _design_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="a store written by `ratedist gradients capture`")
    p.add_argument("--step", type=int, default=None, help="this step only (default all)")
    p.add_argument(
        "--bits",
        default=",".join(map(str, DEFAULT_BITS)),
        help="comma-separated bits per coordinate (default 2,3,4; target entropy for ecsq)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated design methods (default all: {', '.join(DESIGNS.names())})",
    )
    p.add_argument(
        "--no-empirical",
        action="store_true",
        help="skip the reference design on the empirical law (most of the run time)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _parse_list(text: str, option: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ValueError(f"{option} must be a comma-separated list, got {text!r}")
    return items


def _parse_bits(text: str) -> list[int]:
    out = []
    for t in _parse_list(text, "--bits"):
        try:
            out.append(int(t))
        except ValueError:
            raise ValueError(f"--bits must be comma-separated integers, got {text!r}") from None
    return [check_int("--bits", b, min_value=1, max_value=16) for b in out]


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "-" if v is None or v != v else format(v, spec)


def _design_rows(lr: LayerResult) -> list[str]:
    if lr.result is None:
        return [f"  {lr.layer}: error: {lr.error}"]
    d: LayerDesign = lr.result
    params = " ".join(f"{k}={_fmt(v)}" for k, v in d.fit.best.params.items())
    lines = [
        f"  {lr.layer}: model {d.fit.best.family} {params} (unit: RMS {d.rms:.4g}); "
        f"fit on {d.n_fit}, measured on {d.n_eval} held-out nonzero coordinates "
        f"({d.zeros_eval:.1%} zeros left out)",
        f"    {'method':<17} {'bits':>4} {'rounding':<13} {'predicted':>10} "
        f"{'measured ± SE':>20} {'cost dB':>8} {'empirical':>10}  entropy bits pred/meas",
    ]
    for r in d.rows:
        if r.error is not None:
            lines.append(f"    {r.method:<17} {r.bits:>4} error: {r.error}")
            continue
        meas = f"{_fmt(r.measured)} ± {_fmt(r.measured_se, '.2g')}"
        lines.append(
            f"    {r.method:<17} {r.bits:>4} {r.rounding:<13} {_fmt(r.predicted):>10} "
            f"{meas:>20} {r.model_cost_db:>+8.2f} {_fmt(r.empirical):>10}  "
            f"{r.predicted_entropy:.3f}/{r.measured_entropy:.3f}"
        )
    return lines


def _run_design(args: argparse.Namespace) -> int:
    if args.step is not None and args.step < 0:
        raise ValueError(f"--step must be >= 0, got {args.step}")
    bits = _parse_bits(args.bits)
    methods = None if args.methods is None else _parse_list(args.methods, "--methods")
    for m in methods or ():
        if m not in DESIGNS.names():
            raise ValueError(
                f"--methods: unknown method {m!r}; known: {', '.join(DESIGNS.names())}"
            )
    cap = load_capture(args.directory, steps=None if args.step is None else [args.step])
    res = design_capture(cap, bits=bits, methods=methods, empirical=not args.no_empirical)
    for lr in res:
        if lr.error is not None:
            warnings.warn(f"not designed: {lr.error}", stacklevel=1)
    if args.json:
        steps = [
            {
                "step": step,
                "layers": {
                    lr.layer: {"error": lr.error} if lr.result is None else lr.result.to_dict()
                    for lr in res
                    if lr.step == step
                },
            }
            for step in cap.steps
        ]
        obj = {
            "directory": str(cap.directory),
            "model": cap.manifest["model"],
            "bits": bits,
            "methods": methods or applicable_methods(),
            "steps": steps,
        }
        json.dump(obj, sys.stdout)
        sys.stdout.write("\n")
        return 0
    m = cap.manifest
    lines = [
        f"{m['model']}: quantizers designed on the best-fit model of the first half of the "
        f"{m['minibatches']} minibatch gradients, measured on the other half ({cap.directory})",
        "MSE per coordinate in units of the fitting half's mean square (per-layer RMS "
        "normalisation); cost = 10 log10(measured/predicted);",
        "empirical = held-out MSE of the same method designed on the fitting half's KDE; "
        "ecsq: bits = target entropy; entropy = output entropy, model vs held-out",
    ]
    for step in cap.steps:
        lines += ["", f"step {step}:"]
        for lr in res:
            if lr.step == step:
                lines += _design_rows(lr)
    print("\n".join(lines))
    return 0


#: action name -> :class:`Action`.
ACTIONS: Registry[Action] = Registry("gradients action")
ACTIONS.add(
    "capture",
    Action(
        "Train a model and record per-layer full-batch and minibatch gradients at chosen steps.",
        _capture_arguments,
        _run_capture,
    ),
)
ACTIONS.add(
    "fit",
    Action(
        "Fit gradient models to a capture: best family by AIC, KS, dAIC, tail index per layer.",
        _fit_arguments,
        _run_fit,
    ),
)


ACTIONS.add(
    "design",
    Action(
        "Design every quantizer from the fitted model; predicted vs held-out MSE per layer.",
        _design_arguments,
        _run_design,
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name in ACTIONS.names():
        action = ACTIONS.get(name)
        action.add_arguments(sub.add_parser(name, help=action.help, description=action.help))


def run(args: argparse.Namespace) -> int:
    return ACTIONS.get(args.action).run(args)
