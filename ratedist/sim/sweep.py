"""Sweeps: expand a TOML/dict description into run configs, run them, store the results.

A sweep document (TOML, read with ``tomllib``)::

    [sweep]
    steps = 2000
    gamma = "theory"          # or a number; gamma_multiplier scales "theory"
    seeds = [0, 1]
    engine = "vmap"           # optional; replicas = 8 optional

    [problem]                 # or [[problems]]; list values expand into a grid
    name = "tridiagonal_quadratic"
    n_workers = 10
    dim = 100

    [[algorithms]]            # list values expand into a grid
    name = "ef21"
    compressor = ["top-k:k=1", "top-k:k=10"]

A run config is the canonical dict ``{"problem": {...}, "algorithm": {...}, "steps", "gamma",
"gamma_multiplier", "seed", "engine", "replicas", "dtype"}``; its hash names the result file.
Algorithm parameters whose registry kind (``ALGORITHMS`` fact ``args``) is a compressor are
compressor spec strings (``ratedist.compressors.make``); an ``"algorithm"`` one is a nested
algorithm table (3PCv3's ``inner``).
"""

from __future__ import annotations

import copy
import inspect
import itertools
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ratedist._io import remove_stale_temporaries
from ratedist._validation import check_choice, check_int, check_positive
from ratedist.compressors.spec import make
from ratedist.sim.algorithms import ALGORITHMS
from ratedist.sim.engines import ENGINES
from ratedist.sim.method import Algorithm
from ratedist.sim.problems import PROBLEMS, Problem
from ratedist.sim.runner import run, theory_gamma
from ratedist.sim.store import ResultStore, canonical_json
from ratedist.sim.trace import Trace

_RUN_DEFAULTS = {
    "gamma": "theory",
    "gamma_multiplier": 1.0,
    "seed": 0,
    "engine": "vmap",
    "replicas": None,
    "dtype": "float64",
}


def _grid(table: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """Cartesian product over list-valued entries (the ``name`` must be a string)."""
    if not isinstance(table, Mapping):
        raise TypeError(f"{what} must be a table (dict), got {type(table).__name__}")
    if "name" not in table or not isinstance(table["name"], str):
        raise ValueError(f"{what} must have a string 'name', got {dict(table)!r}")
    keys = list(table)
    values = [v if isinstance(v, list) else [v] for v in table.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def expand_sweep(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All run configs of a sweep document (see module docstring), in a stable order.

    Raises:
        ValueError: missing sections, unknown problem/algorithm names, bad steps/gamma/seeds.
    """
    if not isinstance(doc, Mapping):
        raise TypeError(f"sweep document must be a dict, got {type(doc).__name__}")
    sweep = dict(doc.get("sweep", {}))
    if "steps" not in sweep:
        raise ValueError("sweep.steps must be given (number of steps per run)")
    check_int("steps", sweep["steps"], min_value=1)
    problems = doc.get("problems", doc.get("problem"))
    if problems is None:
        raise ValueError("sweep document needs a [problem] table or [[problems]] tables")
    problems = problems if isinstance(problems, list) else [problems]
    algorithms = doc.get("algorithms", doc.get("algorithm"))
    if algorithms is None:
        raise ValueError("sweep document needs [[algorithms]] tables")
    algorithms = algorithms if isinstance(algorithms, list) else [algorithms]
    seeds = sweep.pop("seeds", [sweep.pop("seed", 0)])
    seeds = seeds if isinstance(seeds, list) else [seeds]
    for what, items in (("problems", problems), ("algorithms", algorithms), ("seeds", seeds)):
        if not items:
            raise ValueError(f"sweep {what} must not be empty: the sweep would run nothing")
    unknown = set(sweep) - {"steps", *_RUN_DEFAULTS}
    if unknown:
        raise ValueError(
            f"sweep has unknown keys {sorted(unknown)}; allowed: steps, seeds, {sorted(_RUN_DEFAULTS)}"
        )
    base = {**_RUN_DEFAULTS, **sweep}
    out = []
    for ptab in problems:
        for pcfg in _grid(ptab, "problem"):
            PROBLEMS.entry(pcfg["name"])
            for atab in algorithms:
                for acfg in _grid(atab, "algorithm"):
                    ALGORITHMS.entry(acfg["name"])
                    for seed in seeds:
                        cfg = {
                            **base,
                            "problem": pcfg,
                            "algorithm": acfg,
                            "seed": check_int("seed", seed, min_value=0),
                        }
                        _check_run_config(cfg)
                        out.append(cfg)
    return out


def load_sweep(path: Any) -> list[dict[str, Any]]:
    """Read a TOML sweep file and expand it with :func:`expand_sweep`.

    Raises:
        ValueError: a missing, unreadable, non-UTF-8 or invalid TOML file (the message names
            the file) or a bad sweep.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"config file {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config file {str(p)!r} is a directory; give a TOML file") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(f"config file {str(p)!r} cannot be read: {reason}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"config file {str(p)!r} is not UTF-8 text (TOML): byte {exc.object[exc.start]:#04x} "
            f"at offset {exc.start}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc
    return expand_sweep(doc)


def _check_run_config(cfg: Mapping[str, Any]) -> None:
    g = cfg["gamma"]
    if not (isinstance(g, str) and g == "theory"):
        if isinstance(g, str):
            raise ValueError(f"gamma must be a positive number or 'theory', got {g!r}")
        check_positive("gamma", g)
    check_positive("gamma_multiplier", cfg["gamma_multiplier"])
    check_choice("engine", cfg["engine"], ENGINES)
    check_choice("dtype", cfg["dtype"], ("float32", "float64"))
    if cfg["replicas"] is not None:
        check_int("replicas", cfg["replicas"], min_value=1)


def make_algorithm(config: Mapping[str, Any]) -> Algorithm:
    """An :class:`Algorithm` from ``{"name": ..., <constructor parameters>}``.

    Compressor parameters are spec strings (``"top-k:k=10"``); ``inner`` is a nested table.
    An algorithm's own :attr:`~ratedist.sim.Algorithm.config` (name under ``"algorithm"``)
    builds it again.

    Raises:
        ValueError: unknown algorithm or parameter (the message lists the allowed ones).
    """
    cfg = dict(config)
    name = cfg.pop("name", None) or cfg.pop("algorithm", None)
    factory = ALGORITHMS.get(name)
    kinds = ALGORITHMS.facts(name)["args"]
    params = inspect.signature(factory).parameters
    allowed = list(params)
    kwargs = {}
    for k, v in cfg.items():
        if k not in allowed:
            raise ValueError(f"algorithm {name!r} has no parameter {k!r}; allowed: {allowed}")
        kind = kinds.get(k, "hyper")
        if kind in ("contractive", "unbiased"):
            kwargs[k] = make(v)
        elif kind == "algorithm":
            kwargs[k] = make_algorithm(v)
        else:
            kwargs[k] = v
    missing = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty and p.name not in kwargs
    ]
    if missing:
        raise ValueError(f"algorithm {name!r} needs parameter(s) {missing}")
    return factory(**kwargs)


def make_problem_from_config(config: Mapping[str, Any]) -> Problem:
    """A :class:`Problem` from ``{"name": ..., <constructor keyword parameters>}``.

    Raises:
        ValueError: unknown problem name.  TypeError: unknown parameter.
    """
    cfg = dict(config)
    name = cfg.pop("name", None)
    factory = PROBLEMS.get(name)
    noise = cfg.pop("noise_std", None)
    allowed = list(inspect.signature(factory).parameters)
    bad = [k for k in cfg if k not in allowed]
    if bad:
        raise ValueError(f"problem {name!r} has no parameter(s) {bad}; allowed: {allowed}")
    prob = factory(**cfg)
    return prob if noise is None else prob.with_noise(noise)


#: Recently built problems and algorithms by canonical config (objects are immutable), so
#: that configs differing only in hyperparameters (gamma, zeta, p, noise_std) run the same
#: objects and therefore the same compiled program (:func:`ratedist.sim.run` caches by
#: identity).
_OBJECTS: OrderedDict = OrderedDict()
_OBJECTS_SIZE = 8


def _shared(kind: str, cfg: Mapping[str, Any], build: Callable[[], Any]) -> Any:
    ck = (kind, canonical_json(cfg))
    if ck in _OBJECTS:
        _OBJECTS.move_to_end(ck)
        return _OBJECTS[ck]
    obj = _OBJECTS[ck] = build()
    while len(_OBJECTS) > _OBJECTS_SIZE:
        _OBJECTS.popitem(last=False)
    return obj


def _split_hyper(acfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config with the registry's example hyperparameters, the config's hyperparameters)``."""
    facts = ALGORITHMS.facts(acfg.get("name"))
    hyper = {k: v for k, v in acfg.items() if facts["args"].get(k) == "hyper"}
    return {**acfg, **{k: facts["example"][k] for k in hyper}}, hyper


def run_config(
    config: Mapping[str, Any], *, progress: bool = False
) -> tuple[Trace, dict[str, Any]]:
    """Run one canonical config; returns ``(trace, meta)`` (meta: constants and labels).

    Hyperparameters (the problem's ``noise_std``, the algorithm's ``zeta``/``p``, ``gamma``)
    are passed to :func:`~ratedist.sim.run` as program inputs, so the configs of a sweep that
    differ only in them reuse one compiled program.
    """
    cfg = {**_RUN_DEFAULTS, **config}
    _check_run_config(cfg)
    pcfg = dict(cfg["problem"])
    noise = pcfg.pop("noise_std", None)
    problem = _shared("problem", pcfg, lambda: make_problem_from_config(pcfg))
    hyper: dict[str, Any] = {}
    if noise is not None:
        check_positive("noise_std", noise)
        problem = _shared("noisy", pcfg, lambda: problem.with_noise(1.0))
        hyper["noise_std"] = noise
    named = make_algorithm(cfg["algorithm"])  # checks every parameter; names the result
    base, alg_hyper = _split_hyper(cfg["algorithm"])
    algorithm = _shared("algorithm", base, lambda: make_algorithm(base))
    hyper.update(alg_hyper)
    gamma = cfg["gamma"]
    if gamma == "theory":
        gamma = theory_gamma(named, problem)
    gamma = float(gamma) * float(cfg["gamma_multiplier"])
    trace = run(
        algorithm,
        problem,
        steps=cfg["steps"],
        key=jax.random.key(cfg["seed"]),
        engine=cfg["engine"],
        replicas=cfg["replicas"],
        gamma=gamma,
        dtype=cfg["dtype"],
        progress=progress,
        hyper=hyper,
    )
    algorithm = named
    meta = {
        "algorithm": algorithm.name,
        "problem": problem.name,
        "n_workers": problem.n_workers,
        "dim": problem.dim,
        "f_star": problem.f_star,
        "L_minus": problem.L_minus,
        "L_plus": problem.L_plus,
        "L_plus_upper": problem.L_plus_upper,
        "labels": dict(problem.labels),
    }
    return trace, meta


def problem_labels(problems: Sequence[Mapping[str, Any]]) -> list[str]:
    """A label per problem config that tells it apart from the others in ``problems``.

    The label is the registry name (``logistic_nonconvex``, ``logistic_breast_cancer``: the
    name the config gives, not the family name a problem reports, which several
    constructors share), followed by ``[key=value,...]`` for the parameters whose values
    differ among the configs of that name (``tridiagonal_quadratic[dim=10]``).

    Args:
        problems: problem tables of run configs (``config["problem"]``).

    Returns:
        One label per entry, in order.
    """
    by_name: dict[Any, list[Mapping[str, Any]]] = {}
    for p in problems:
        by_name.setdefault(p.get("name"), []).append(p)
    out = []
    for p in problems:
        same = by_name[p.get("name")]
        keys = sorted({k for q in same for k in q} - {"name"})
        varying = [k for k in keys if k in p and len({repr(q.get(k)) for q in same}) > 1]
        params = ",".join(f"{k}={p[k]}" for k in varying)
        out.append(f"{p.get('name', '?')}[{params}]" if params else str(p.get("name", "?")))
    return out


def run_sweep(
    configs: Iterable[Mapping[str, Any]],
    out: Any,
    *,
    progress: bool = False,
    runner: Callable[..., tuple[Trace, dict[str, Any]]] = run_config,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Run every config not yet finished in ``out``; each result is saved atomically.

    First the temporaries that killed writers left in ``out`` are removed (never one of a
    live writer: :func:`ratedist._io.remove_stale_temporaries`).

    An exception in config k propagates after configs 0..k−1 were saved; re-running skips them.

    Args:
        configs: canonical run configs (:func:`expand_sweep`).
        out: result directory.
        progress: tqdm bars inside each run.
        runner: ``config -> (trace, meta)`` (default :func:`run_config`).
        log: optional callback for one line per config (problems named by
            :func:`problem_labels`).

    Returns:
        ``{"total": ..., "ran": ..., "skipped": ..., "diverged": ...}`` (``diverged``: runs
        of this call whose trace has a non-finite metric).
    """
    configs = [copy.deepcopy(dict(cfg)) for cfg in configs]
    labels = problem_labels([cfg.get("problem", {}) for cfg in configs])
    store = ResultStore(out)
    for orphan in remove_stale_temporaries(out, before=time.time()):
        if log:
            log(f"removed {orphan.name}, left by a writer that was killed")
    counts = {"total": 0, "ran": 0, "skipped": 0, "diverged": 0}
    for cfg, label in zip(configs, labels, strict=True):
        counts["total"] += 1
        if store.done(cfg):
            counts["skipped"] += 1
            if log:
                log(f"skip {store.path(cfg).name}")
            continue
        trace, meta = runner(cfg, progress=progress)
        path = store.save(cfg, trace, meta)
        counts["ran"] += 1
        first = np.asarray(trace.diverged_at)
        diverged = bool(np.any(first >= 0))
        counts["diverged"] += diverged
        if log:
            tail = f" DIVERGED at step {first.tolist()}" if diverged else ""
            log(f"done {path.name}: {meta.get('algorithm', '')} on {label}{tail}")
    return counts
