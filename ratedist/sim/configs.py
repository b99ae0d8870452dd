"""Run configs to objects: the builders behind a sweep's tables.

A run config (:mod:`ratedist.sim.sweep`) names its problem, algorithm, gradient code,
participation model and aggregation by registry name plus parameters; the functions here build
those objects, check every parameter against its constructor (unknown and missing ones named,
the offending table in the message), check that the stages fit the problem, and keep the
recently built objects by canonical config (:data:`_OBJECTS`), so that configs that differ
only in hyperparameters run the same objects and hence one compiled program.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ratedist._validation import check_choice, check_int, check_positive
from ratedist.compressors.spec import make
from ratedist.sim.algorithms import ALGORITHMS
from ratedist.sim.coded import ENCODINGS, coded
from ratedist.sim.codes import CODES, DECODE_RULES, GradientCode
from ratedist.sim.engines import ENGINES
from ratedist.sim.method import Algorithm
from ratedist.sim.problems import PROBLEMS, Problem
from ratedist.sim.stages import AGGREGATION, PARTICIPATION, Aggregation, Participation
from ratedist.sim.store import canonical_json


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


def _checked(section: str, cfg: Mapping[str, Any], build: Callable[..., Any], *args: Any) -> Any:
    """``build(*args)``, its ValueError/TypeError prefixed with the table it came from."""
    try:
        return build(*args)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"[{section}] {canonical_json(cfg)}: {exc}") from exc


def _kwargs(
    what: str, name: str, factory: Callable[..., Any], cfg: Mapping[str, Any], hint: str = ""
) -> dict:
    """``cfg`` checked against ``factory``'s parameters (unknown and missing ones named;
    ``hint`` is appended to the message of missing ones)."""
    params = inspect.signature(factory).parameters
    bad = [k for k in cfg if k not in params]
    if bad:
        raise ValueError(f"{what} {name!r} has no parameter(s) {bad}; allowed: {list(params)}")
    missing = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty and p.name not in cfg
    ]
    if missing:
        raise ValueError(f"{what} {name!r} needs parameter(s) {missing}{hint}")
    return dict(cfg)


def _problem_param(pcfg: Mapping[str, Any], key: str) -> Any:
    """A problem config's parameter ``key`` (``n_workers``, ``dim``): given, or its
    constructor's default (None: neither)."""
    if key in pcfg:
        return pcfg[key]
    param = inspect.signature(PROBLEMS.get(pcfg["name"])).parameters.get(key)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _resolve_code(ccfg: Mapping[str, Any], pcfg: Mapping[str, Any]) -> dict[str, Any]:
    """The code table of a run config: ``n`` filled in with the problem's ``n_workers`` when
    the code's constructor has an ``n`` and the table does not give it."""
    params = inspect.signature(CODES.get(ccfg["name"])).parameters
    if "n" not in params or "n" in ccfg:
        return dict(ccfg)
    n = _problem_param(pcfg, "n_workers")
    if n is None:
        raise ValueError(
            f"n must be given: problem {pcfg['name']!r} has no n_workers to default it to"
        )
    return {**ccfg, "n": n}


def make_code_from_config(config: Mapping[str, Any]) -> GradientCode:
    """A :class:`~ratedist.sim.codes.GradientCode` from ``{"name": ..., "encode": ...,
    <constructor parameters>}`` (``encode``, one of :data:`ENCODINGS`, is for :func:`coded`).

    Raises:
        ValueError: unknown code (the message lists the known ones), encoding or parameter,
            a missing parameter, a bad value (``s >= n``, ``d > n``, ...).
    """
    cfg = dict(config)
    name = cfg.pop("name", None)
    factory = CODES.get(name)
    check_choice("encode", cfg.pop("encode", "combination"), ENCODINGS)
    return factory(**_kwargs("code", name, factory, cfg))


def make_participation_from_config(
    config: Mapping[str, Any], code: GradientCode | None = None
) -> Participation:
    """A :class:`~ratedist.sim.stages.Participation` from ``{"name": ..., <parameters>}``; a
    constructor parameter named ``code`` receives ``code`` (the run's gradient code).

    Raises:
        ValueError: unknown model (the message lists the known ones) or parameter, a missing
            parameter, a bad value, a model that needs a code without one.
    """
    cfg = dict(config)
    name = cfg.pop("name", None)
    factory = PARTICIPATION.get(name)
    if "code" in cfg:
        raise ValueError(
            f"participation {name!r}: 'code' is not a parameter of the table; the run's code "
            "(the [code] table) is passed to a model that takes one"
        )
    if "code" in inspect.signature(factory).parameters:
        if code is None:
            raise ValueError(
                f"participation {name!r} is computed from the gradient code: the sweep needs a "
                "[code] table"
            )
        cfg["code"] = code
    return factory(**_kwargs("participation", name, factory, cfg))


def make_aggregation_from_config(
    config: Mapping[str, Any], code: GradientCode | None = None
) -> Aggregation:
    """An :class:`~ratedist.sim.stages.Aggregation` from ``{"name": ..., <parameters>}``.

    With a code the name is a rule on the decoded sum (:data:`~ratedist.sim.codes.DECODE_RULES`:
    ``"decode"``, ``"majority"``) and there are no parameters; without one it names a
    constructor of :data:`~ratedist.sim.stages.AGGREGATION`.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or parameter, a
            missing parameter (``"decode"`` without a code: its weights are a code's).
    """
    cfg = dict(config)
    name = cfg.pop("name", None)
    if code is not None:
        check_choice("aggregation with a [code]", name, DECODE_RULES)
        if cfg:
            raise ValueError(
                f"aggregation {name!r} with a [code] has no parameters, got {sorted(cfg)}"
            )
        return code.aggregation(rule=name)
    factory = AGGREGATION.get(name)
    hint = f" (with a [code] table, {sorted(DECODE_RULES)} act on the code's decoded sum)"
    return factory(**_kwargs("aggregation", name, factory, cfg, hint))


def _check_stages(given: Mapping[str, Any], pcfg: Mapping[str, Any]) -> None:
    """Build a run config's stages once (every parameter checked) and check that they fit the
    problem: the code's partitions are its workers, the participation fits the run's workers."""
    ccfg = given.get("code")
    code = None
    n_workers = _problem_param(pcfg, "n_workers")
    if ccfg is not None:
        code = _checked(
            "code", ccfg, lambda: _shared("code", ccfg, lambda: make_code_from_config(ccfg))
        )
        if n_workers is not None and code.n_partitions != n_workers:
            raise ValueError(
                f"[code] {canonical_json(ccfg)}: the code has {code.n_partitions} partitions but "
                f"problem {pcfg['name']!r} has n_workers = {n_workers}; they must be equal (each "
                "problem worker is one data partition)"
            )
        n_workers = code.n_workers
    if "aggregation" in given:
        acfg = given["aggregation"]
        _checked("aggregation", acfg, lambda: make_aggregation_from_config(acfg, code))
    if "participation" in given:
        part_cfg = given["participation"]
        part = _checked(
            "participation", part_cfg, lambda: make_participation_from_config(part_cfg, code)
        )
        if part.check is not None and n_workers is not None:
            _checked("participation", part_cfg, lambda: part.check(n_workers))


def _check_theory_gamma(cfg: Mapping[str, Any], alg: Algorithm, pcfg: Mapping[str, Any]) -> None:
    """``gamma = "theory"`` with a code needs ``B = 0`` or no 3PC constants: the coded
    problem has no ``L_+`` (checked with the problem's ``dim``, when the config tells it)."""
    if "code" not in cfg or cfg["gamma"] != "theory" or alg.A is None:
        return
    dim = _problem_param(pcfg, "dim")
    if dim is None:
        return
    _, B = alg.constants(dim, cfg["code"]["n"])
    if B is None or B != 0:
        raise ValueError(
            f"gamma must be a number for algorithm {alg.name!r} with a [code]: its theoretical "
            "step size needs L_+ (its B is not 0), which the coded workers do not have"
        )


#: Recently built problems, algorithms, codes and stages by canonical config (objects are
#: immutable), so that configs differing only in hyperparameters (gamma, zeta, p, noise_std,
#: the straggler probability) run the same objects and therefore the same compiled program
#: (:func:`ratedist.sim.run` caches by identity).
_OBJECTS: OrderedDict = OrderedDict()
_OBJECTS_SIZE = 16


#: Guards :data:`_OBJECTS`: the threads of an executor's worker (a Dask worker with several
#: threads) run configs at the same time.
_OBJECTS_LOCK = threading.RLock()


def _shared(kind: str, cfg: Mapping[str, Any], build: Callable[[], Any]) -> Any:
    ck = (kind, canonical_json(cfg))
    with _OBJECTS_LOCK:
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


class _Stages(NamedTuple):
    """What a config's stage tables add to a run: the problem to run, ``run`` keywords,
    hyperparameters and meta entries."""

    problem: Problem
    kwargs: dict[str, Any]
    hyper: dict[str, Any]
    meta: dict[str, Any]
    encode: str | None = None


def _run_stages(cfg: Mapping[str, Any], problem: Problem, pkey: Mapping[str, Any]) -> _Stages:
    """The stages of a run config (all shared by config: see :data:`_OBJECTS`)."""
    out = _Stages(problem, {}, {}, {})
    ccfg = cfg.get("code")
    code = None
    if ccfg is not None:
        code = _shared("code", ccfg, lambda: make_code_from_config(ccfg))
        encode = ccfg.get("encode", "combination")
        c = _shared(
            "coded", {"problem": pkey, "code": ccfg}, lambda: coded(problem, code, encode=encode)
        )
        out = out._replace(problem=c.problem, encode=encode)
        out.kwargs.update(oracle=c.oracle, aggregation=c.aggregation)
        out.meta.update(code=code.name, code_s=code.s)
    agg_cfg = cfg.get("aggregation")
    if agg_cfg is not None:
        out.kwargs["aggregation"] = _shared(
            "aggregation",
            {"code": ccfg, "aggregation": agg_cfg},
            lambda: make_aggregation_from_config(agg_cfg, code),
        )
    if "aggregation" in out.kwargs:
        out.meta["aggregation"] = out.kwargs["aggregation"].name
    part_cfg = cfg.get("participation")
    if part_cfg is not None:
        named = make_participation_from_config(part_cfg, code)
        # the object of the first value of its hyperparameters, the values as program inputs
        hyper_params = PARTICIPATION.facts(part_cfg["name"]).get("hyper", {})
        key = {k: v for k, v in part_cfg.items() if k not in hyper_params}
        out.kwargs["participation"] = _shared(
            "participation", {"code": ccfg, "participation": key}, lambda: named
        )
        out.hyper.update(named.hyper)
        out.meta["participation"] = named.name
    return out


__all__ = [
    "make_aggregation_from_config",
    "make_algorithm",
    "make_code_from_config",
    "make_participation_from_config",
    "make_problem_from_config",
]
