"""Sweeps: expand a TOML/dict description into run configs, run them, store the results.

The objects a config names (problem, algorithm, code, stages) are built and checked by
:mod:`ratedist.sim.configs`.

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

Optional stage tables (each a table or an array of tables, ``[code]`` / ``[[codes]]`` and so
on; list values expand into the grid like those of problems and algorithms) run the problem
with gradient coding and stragglers (:mod:`ratedist.sim.codes`, :mod:`ratedist.sim.stages`)::

    [[codes]]                 # a code of ratedist.sim.codes.CODES and its parameters
    name = "frc"              # uncoded, frc, crc, random_replication
    s = 1                     # n defaults to the problem's n_workers (the partitions)
    encode = "combination"    # optional: y_i = sum_j B_ij g_j, or "partitions" (each B_ij g_j)

    [participation]           # a model of ratedist.sim.stages.PARTICIPATION
    name = "bernoulli"        # all, bernoulli (p), exactly (s), pattern (mask)
    p = [0.1, 0.3]            # the straggler probability: one compiled program for both

    [aggregation]             # optional; with a code: "decode" (default) or "majority" (the
    name = "majority"         # sign of the decoded sum); without: mean, mean_active, majority

The problem's workers are the code's data partitions: the code must have ``k`` =
``n_workers`` partitions, and the run has the code's ``n`` workers. A participation
constructor with a parameter named ``code`` receives the run's code. Everything is checked
when the sweep is expanded: codes, participation models, aggregations and the algorithms'
compressors are built once there (a bad value raises ValueError naming its table).
A ``pattern`` mask is a list of lists, and lists expand: write it inside one more list,
``mask = [[[true, false, ...], ...]]``.

A run config is the canonical dict ``{"problem": {...}, "algorithm": {...}, "steps", "gamma",
"gamma_multiplier", "seed", "engine", "replicas", "dtype"}``, plus ``"code"`` (with its ``n``
filled in), ``"participation"`` and ``"aggregation"`` when the sweep has those tables (so the
configs, and the result files, of sweeps without them are those of before); its hash names
the result file. Algorithm parameters whose registry kind (``ALGORITHMS`` fact ``args``) is a
compressor are compressor spec strings (``ratedist.compressors.make``); an ``"algorithm"`` one
is a nested algorithm table (3PCv3's ``inner``).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ratedist._io import remove_stale_temporaries
from ratedist._validation import check_int, check_positive
from ratedist.sim import distributed
from ratedist.sim.coded import partitionwise
from ratedist.sim.configs import (
    _check_run_config,
    _check_stages,
    _check_theory_gamma,
    _checked,
    _resolve_code,
    _run_stages,
    _shared,
    _split_hyper,
    make_algorithm,
    make_problem_from_config,
)
from ratedist.sim.problems import PROBLEMS
from ratedist.sim.runner import run, theory_gamma
from ratedist.sim.store import CLAIM_TIMEOUT_S, ResultStore, config_hash
from ratedist.sim.trace import Trace

_RUN_DEFAULTS = {
    "gamma": "theory",
    "gamma_multiplier": 1.0,
    "seed": 0,
    "engine": "vmap",
    "replicas": None,
    "dtype": "float64",
}

#: The optional stage sections of a sweep: run-config key -> its array-of-tables spelling.
STAGE_SECTIONS = {"code": "codes", "participation": "participations", "aggregation": "aggregations"}
_SECTIONS = (
    "sweep",
    "problem",
    "problems",
    "algorithm",
    "algorithms",
    *STAGE_SECTIONS,
    *STAGE_SECTIONS.values(),
)


def _grid(table: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """Cartesian product over list-valued entries (the ``name`` must be a string)."""
    if not isinstance(table, Mapping):
        raise TypeError(f"{what} must be a table (dict), got {type(table).__name__}")
    if "name" not in table or not isinstance(table["name"], str):
        raise ValueError(f"{what} must have a string 'name', got {dict(table)!r}")
    keys = list(table)
    values = [v if isinstance(v, list) else [v] for v in table.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _stage_tables(doc: Mapping[str, Any], key: str) -> list[Any]:
    """The tables of an optional stage section (``[code]`` or ``[[codes]]``), [] if absent."""
    plural = STAGE_SECTIONS[key]
    if key in doc and plural in doc:
        raise ValueError(f"sweep document has both [{key}] and [[{plural}]]; give one of them")
    tables = doc.get(plural, doc.get(key))
    if tables is None:
        return []
    tables = tables if isinstance(tables, list) else [tables]
    if not tables:
        raise ValueError(f"sweep {plural} must not be empty: the sweep would run nothing")
    return tables


def expand_sweep(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All run configs of a sweep document (see module docstring), in a stable order.

    The grid is problems x codes x aggregations x algorithms x participation models x seeds
    (the participation innermost but for the seeds, so that configs differing only in the
    straggler probability follow each other and share a compiled program).

    Raises:
        ValueError: missing sections, unknown section, problem/algorithm/code/participation/
            aggregation names, bad steps/gamma/seeds, a bad parameter of an algorithm's
            compressor, a code, a participation model or an aggregation, a code whose
            partitions differ from the problem's ``n_workers``.
    """
    if not isinstance(doc, Mapping):
        raise TypeError(f"sweep document must be a dict, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(_SECTIONS))
    if unknown:
        raise ValueError(
            f"sweep document has unknown sections {unknown}; allowed: {sorted(_SECTIONS)}"
        )
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
    stages = {
        key: [c for t in _stage_tables(doc, key) for c in _grid(t, key)] or [None]
        for key in STAGE_SECTIONS
    }
    acfgs = [acfg for atab in algorithms for acfg in _grid(atab, "algorithm")]
    named = [_checked("algorithms", acfg, lambda a=acfg: make_algorithm(a)) for acfg in acfgs]
    base = {**_RUN_DEFAULTS, **sweep}
    out = []
    for ptab in problems:
        for pcfg in _grid(ptab, "problem"):
            PROBLEMS.entry(pcfg["name"])
            codes = [
                c if c is None else _checked("code", c, _resolve_code, c, pcfg)
                for c in stages["code"]
            ]
            grid = itertools.product(
                codes,
                stages["aggregation"],
                zip(acfgs, named, strict=True),
                stages["participation"],
            )
            for code, agg, (acfg, alg), part in grid:
                given = {"code": code, "aggregation": agg, "participation": part}
                given = {k: v for k, v in given.items() if v is not None}
                _check_stages(given, pcfg)
                for seed in seeds:
                    cfg = {
                        **base,
                        "problem": pcfg,
                        "algorithm": acfg,
                        "seed": check_int("seed", seed, min_value=0),
                        **given,
                    }
                    _check_run_config(cfg)
                    _check_theory_gamma(cfg, alg, pcfg)
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


def run_config(
    config: Mapping[str, Any], *, progress: bool = False
) -> tuple[Trace, dict[str, Any]]:
    """Run one canonical config; returns ``(trace, meta)`` (meta: constants and labels).

    Hyperparameters (the problem's ``noise_std``, the algorithm's ``zeta``/``p``, the
    straggler probability, ``gamma``) are passed to :func:`~ratedist.sim.run` as program
    inputs, so the configs of a sweep that differ only in them reuse one compiled program.

    With a ``"code"``, the problem's workers are the code's partitions and the run has the
    code's workers (:func:`ratedist.sim.coded.coded`), its oracle and its decoding (or the
    ``"aggregation"`` rule on the decoded sum); meta then names the code (``code``, and
    ``code_s``: the stragglers it decodes exactly), the ``aggregation`` and the
    ``participation`` (when given).
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
    stages = _run_stages(cfg, problem, {**pcfg, "noisy": noise is not None})
    problem = stages.problem
    named = make_algorithm(cfg["algorithm"])  # checks every parameter; names the result
    base, alg_hyper = _split_hyper(cfg["algorithm"])
    algorithm = _shared("algorithm", base, lambda: make_algorithm(base))
    if stages.encode == "partitions":  # the mechanism runs once per held partition
        inner = algorithm
        algorithm = _shared("partitionwise", base, lambda: partitionwise(inner))
    hyper.update(alg_hyper)
    hyper.update(stages.hyper)
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
        **stages.kwargs,
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
        **stages.meta,
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


class Shard(NamedTuple):
    """Part ``index`` of ``count`` of a sweep: the configs whose :func:`config_hash` ``h`` has
    ``int(h, 16) % count == index``.

    A config's shard is a function of the config alone — not of its position in the expanded
    list — so every process of a job array agrees on it whatever the order of the sweep file,
    and a config keeps its shard when others are added to the sweep (its result is found where
    it was). The price is balance: shard sizes are binomial around ``total / count`` rather
    than equal (``±sqrt(total / count)``), and configs that share a compiled program (those
    differing only in hyperparameters) spread over the shards, each compiling it once.
    """

    index: int
    count: int

    def __contains__(self, config: object) -> bool:
        if not isinstance(config, Mapping):
            return False
        return int(config_hash(config), 16) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: Any) -> Shard:
    """A :class:`Shard` from ``"i/n"`` (as ``--shard`` takes it: ``0/3``, ``2/3``), a
    ``(index, count)`` pair or a :class:`Shard`.

    Raises:
        ValueError: not two integers ``0 <= i < n`` (the message quotes ``spec``).
        TypeError: neither a string nor a pair.
    """
    allowed = "'i/n' with integers 0 <= i < n (e.g. 0/3, 1/3, 2/3)"
    if isinstance(spec, str):
        parts = spec.strip().split("/")
        try:
            index, count = (int(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            index = count = None
    elif isinstance(spec, tuple | list) and len(spec) == 2:
        index, count = spec
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            raise TypeError(f"shard must be {allowed} or an (index, count) pair, got {spec!r}")
    else:
        raise TypeError(f"shard must be {allowed} or an (index, count) pair, got {spec!r}")
    if index is None or count is None or not 0 <= index < count:
        raise ValueError(f"shard must be {allowed}, got {spec!r}")
    return Shard(index, count)


#: what :func:`run_claimed` does with a config, in the order process 0 broadcasts them
_STATUSES = ("ran", "skipped", "claimed")


def run_claimed(
    config: Mapping[str, Any],
    out: Any,
    runner: Callable[..., tuple[Trace, dict[str, Any]]] = run_config,
    progress: bool = False,
    claim_timeout_s: float = CLAIM_TIMEOUT_S,
    x64: bool | None = None,
) -> dict[str, Any]:
    """Run one config into the store ``out`` unless it is finished or another live process
    has claimed it (:meth:`ResultStore.claim`); the unit of work of :func:`run_sweep`, and
    what a worker of an executor runs (it writes the result itself and returns a summary).

    The config is checked again after it is claimed (it may have been finished by a
    process that released its claim meanwhile); the claim is released when the run ends,
    also when it raises.

    In a multi-process job (:mod:`ratedist.sim.distributed`) every process calls this for
    the same configs in the same order: process 0 alone checks the store, claims, and writes
    the result; the others follow its decision (a broadcast), so all run the same programs
    (their collectives span the processes) and nothing is written twice.

    Args:
        config: a canonical run config.
        out: result directory.
        runner: ``config -> (trace, meta)``.
        progress: tqdm bars inside the run.
        claim_timeout_s: age after which any claim is stale (:data:`CLAIM_TIMEOUT_S`).
        x64: run under ``jax.enable_x64(x64)`` (a worker thread or process does not inherit
            its caller's setting); None: under the caller's.

    Returns:
        ``{"status": "ran" | "skipped" | "claimed", "name": file name, ...}``: ``"ran"`` adds
        ``"meta"`` (algorithm and stage names) and ``"diverged_at"``; ``"claimed"`` adds
        ``"holder"`` (:func:`~ratedist.sim.store.read_claim`).
    """
    store = ResultStore(out)
    name = store.path(config).name
    writer = distributed.is_main()  # one process: always
    claim, status = None, "ran"
    if writer:
        if store.done(config):
            status = "skipped"
        else:
            claim = store.claim(config, timeout_s=claim_timeout_s)
            if claim is None:
                status = "claimed"
            elif store.done(config):
                store.release(claim)
                claim, status = None, "skipped"
    # every process of a job runs the same configs: process 0 decides
    status = _STATUSES[distributed.broadcast_from_main(_STATUSES.index(status))]
    if status == "skipped":
        return {"status": "skipped", "name": name}
    if status == "claimed":
        return {"status": "claimed", "name": name, "holder": store.holder(config) or {}}
    try:
        with jax.enable_x64(x64) if x64 is not None else contextlib.nullcontext():
            trace, meta = runner(config, progress=progress)
        if writer:
            store.save(config, trace, meta)
    finally:
        if claim is not None:
            store.release(claim)
    keep = ("algorithm", *STAGE_SECTIONS)
    return {
        "status": "ran",
        "name": name,
        "meta": {k: meta[k] for k in keep if k in meta},
        "diverged_at": np.asarray(trace.diverged_at).tolist(),
    }


def run_sweep(
    configs: Iterable[Mapping[str, Any]],
    out: Any,
    *,
    progress: bool = False,
    runner: Callable[..., tuple[Trace, dict[str, Any]]] = run_config,
    log: Callable[[str], None] | None = None,
    shard: Any = None,
    claim_timeout_s: float = CLAIM_TIMEOUT_S,
    executor: Any = None,
) -> dict[str, int]:
    """Run every config (of ``shard``) not yet finished in ``out``; each result is saved
    atomically, by whichever process runs it.

    First the temporaries that killed writers left in ``out`` are removed (never one of a
    live writer: :func:`ratedist._io.remove_stale_temporaries`). Each config is claimed
    before it runs (:func:`run_claimed`), so several processes may work on one directory —
    the shards of a job array, two copies of one shard, or plain copies of the whole sweep
    that then share its configs — and a config held by a live process is not run twice.

    Without an executor an exception in config k propagates after configs 0..k−1 were
    saved; re-running skips them. With one, every config is submitted first and the first
    exception (in config order) propagates once the others ended.

    Args:
        configs: canonical run configs (:func:`expand_sweep`).
        out: result directory.
        progress: tqdm bars inside each run.
        runner: ``config -> (trace, meta)`` (default :func:`run_config`).
        log: optional callback for one line per config (problems named by
            :func:`problem_labels`).
        shard: run only this part of the configs (:func:`parse_shard`: ``"i/n"``, a pair or
            a :class:`Shard`); None runs them all.
        claim_timeout_s: age in seconds after which another process's claim is stale
            (:data:`~ratedist.sim.store.CLAIM_TIMEOUT_S`).
        executor: None to run in this process, or an object with ``submit(fn, *args)``
            returning a future with ``result()`` — a ``concurrent.futures`` executor or a
            ``dask.distributed.Client`` — whose workers run the configs and write the result
            files themselves (they must see ``out``, which they are given as an absolute
            path); the runs use this process's x64 setting.

    Returns:
        ``{"total": ..., "ran": ..., "skipped": ..., "claimed": ..., "diverged": ...}``
        (``total``: configs of the shard; ``claimed``: held by another live process, not run
        here; ``diverged``: runs of this call whose trace has a non-finite metric).
    """
    configs = [copy.deepcopy(dict(cfg)) for cfg in configs]
    labels = problem_labels([cfg.get("problem", {}) for cfg in configs])
    if shard is not None:
        part = parse_shard(shard)
        mine = [i for i, cfg in enumerate(configs) if cfg in part]
        configs, labels = [configs[i] for i in mine], [labels[i] for i in mine]
    if executor is not None and distributed.is_multiprocess():
        raise ValueError(
            "executor must be None in a multi-process job (its processes run every config "
            "together); got an executor"
        )
    if distributed.is_main():
        for orphan in remove_stale_temporaries(out, before=time.time()):
            if log:
                log(f"removed {orphan.name}, left by a writer that was killed")
    store = ResultStore(out)
    todo = [(cfg, label) for cfg, label in zip(configs, labels, strict=True)]
    if executor is None:
        records = (run_claimed(cfg, out, runner, progress, claim_timeout_s) for cfg, _ in todo)
    else:
        x64 = bool(jax.config.jax_enable_x64)
        records = _results_in_order(
            [
                None
                if store.done(cfg)
                else executor.submit(
                    run_claimed,
                    cfg,
                    str(Path(out).absolute()),
                    runner,
                    progress,
                    claim_timeout_s,
                    x64,
                )
                for cfg, _ in todo
            ],
            [store.path(cfg).name for cfg, _ in todo],
        )
    counts = {"total": 0, "ran": 0, "skipped": 0, "claimed": 0, "diverged": 0}
    for (cfg, label), rec in zip(todo, records, strict=True):
        counts["total"] += 1
        status = rec["status"]
        counts[status] += 1
        if status == "ran":
            first = rec["diverged_at"]
            diverged = bool(np.any(np.asarray(first) >= 0))
            counts["diverged"] += diverged
        if not log:
            continue
        if status == "skipped":
            log(f"skip {rec['name']}")
        elif status == "claimed":
            h = rec["holder"]
            t = h.get("time")
            since = (
                time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(t))
                if isinstance(t, int | float)
                else ""
            )
            who = f"{h.get('host', '?')}:{h.get('pid', '?')}" if h else "another process"
            log(f"claimed {rec['name']} by {who}{since}: not run here")
        else:
            meta = rec["meta"]
            tail = f" DIVERGED at step {first}" if diverged else ""
            with_ = ", ".join(str(meta.get(k, cfg[k])) for k in STAGE_SECTIONS if k in cfg)
            with_ = f" with {with_}" if with_ else ""
            log(f"done {rec['name']}: {meta.get('algorithm', '')} on {label}{with_}{tail}")
    return counts


def _results_in_order(futures: Sequence[Any], names: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The records of submitted configs in config order, each as soon as it is there (None
    for a future: finished before submission). On an error every other future is waited
    for (its run still writes its file) before the error is raised."""
    for i, (fut, name) in enumerate(zip(futures, names, strict=True)):
        if fut is None:
            yield {"status": "skipped", "name": name}
            continue
        try:
            rec = fut.result()
        except Exception:
            for rest in futures[i + 1 :]:
                if rest is not None:
                    with contextlib.suppress(Exception):
                        rest.result()
            raise
        yield rec
