"""A sweep's result directory as one tidy table: one row per (config, replica, step).

Every ``<hash>.npz`` file of a :class:`~ratedist.sim.store.ResultStore` directory — however
many processes or shards wrote it — contributes rows with

* ``hash``: the file's config hash;
* one column per config field, nested tables flattened with dots (``problem.dim``,
  ``algorithm.compressor``, ``participation.p``, ``seed``, ``gamma``: as the config gives
  it, ``"theory"`` or a number); a list value (a straggler ``mask``) as its JSON text; a
  field whose values mix types across files (``"theory"`` and ``0.1``) as JSON text too;
* ``meta.<key>`` for the run's meta (``meta.algorithm``, ``meta.L_plus``, ...);
* ``replica`` (0 without replicas; ``point`` as well when a file holds a hyperparameter
  grid), ``step``;
* the metrics: every per-step scalar of :class:`~ratedist.sim.trace.Trace` (``f``,
  ``f_gap``, ``grad_norm_sq``, ``G``, ``server_error``, ``lyapunov``, ``trigger_rate``, the
  diagnostics, ...), per-worker ones as the mean over workers (``worker_error_mean``,
  ``answered_fraction``), cumulative bits of all workers per convention
  (``bits_up_container``, ``bits_up_entropy``, and ``bits_down_*`` when the run has a
  downlink record), and per-run scalars repeated on each row (``gamma_used``: the step size
  run, ``A``, ``B``, ``violations``, ``diverged_at``).

``steps="final"`` keeps the last recorded step of each run (of a run that diverged, the last
finite one; with replicas, arrays run to the end, NaN after each replica's divergence);
``"all"`` every step, or every ``every``-th one and the last.

:func:`results_columns` needs only numpy; :func:`load_results` returns a pandas DataFrame
(``pip install 'ratedist[cluster]'``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ratedist._validation import check_choice, check_int
from ratedist.sim.store import load_trace
from ratedist.sim.trace import DIAGNOSTIC_FIELDS, Trace

try:
    import pandas as pd
except ImportError:  # an optional extra: load_results says how to install it
    pd = None

#: per-step scalar metrics of a trace, ``(..., steps + 1)``
STEP_METRICS = (
    "f",
    "f_gap",
    "grad_norm_sq",
    "G",
    "server_error",
    "lyapunov",
    "lyapunov_slack",
    "tpc_residual",
    "tpc_residual_max",
    "trigger_rate",
    *DIAGNOSTIC_FIELDS,
)
#: per-run scalars (one per batch entry, or one for all), repeated on each row; the trace's
#: ``gamma`` is named ``gamma_used`` (the config's ``gamma`` may be ``"theory"``)
RUN_SCALARS = {"gamma": "gamma_used", "A": "A", "B": "B", "violations": "violations"}
#: ``steps=`` values
STEP_CHOICES = ("final", "all")


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"problem": {"dim": 6}}`` -> ``{"problem.dim": 6}``; lists as JSON text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def _step_index(n_recorded: int, steps: str, every: int) -> np.ndarray:
    if steps == "final":
        return np.array([n_recorded - 1])
    return np.union1d(np.arange(0, n_recorded, every), [n_recorded - 1])


def trace_columns(
    trace: Trace, *, replicas: bool, steps: str = "final", every: int = 1
) -> dict[str, np.ndarray]:
    """The metric columns of one trace (see the module docstring), rows ordered by batch
    entry, then step.

    Args:
        trace: a stored trace.
        replicas: whether the last batch axis is the replica axis (the config's
            ``replicas`` is set); other batch axes are hyperparameter points.
        steps: ``"final"`` or ``"all"``.
        every: with ``"all"``, keep every ``every``-th step (and the last).
    """
    f = np.asarray(trace.f)
    batch, n_recorded = f.shape[:-1], f.shape[-1]
    size = int(np.prod(batch, dtype=np.int64))
    idx = _step_index(n_recorded, steps, every)

    def per_step(a: Any) -> np.ndarray:
        return np.asarray(a, np.float64).reshape(size, n_recorded)[:, idx].ravel()

    def per_run(a: Any) -> np.ndarray:
        a = np.broadcast_to(np.asarray(a, np.float64), batch).reshape(size)
        return np.repeat(a, len(idx))

    cols: dict[str, np.ndarray] = {}
    entry = np.repeat(np.arange(size), len(idx))
    rep_axis = batch[-1] if replicas and batch else 1
    if len(batch) > int(replicas):
        cols["point"] = entry // rep_axis
    cols["replica"] = entry % rep_axis
    cols["step"] = np.tile(idx, size)
    for name in STEP_METRICS:
        value = getattr(trace, name)
        if value is not None:
            cols[name] = per_step(value)
    cols["worker_error_mean"] = per_step(np.asarray(trace.worker_error).mean(axis=-1))
    if trace.answered is not None:
        cols["answered_fraction"] = per_step(np.asarray(trace.answered, np.float64).mean(-1))
    for convention in ("container", "entropy"):
        cols[f"bits_up_{convention}"] = per_step(trace.bits.total(convention).sum(axis=-1))
        if trace.bits_down is not None:
            cols[f"bits_down_{convention}"] = per_step(trace.bits_down.total(convention))
    for field, name in RUN_SCALARS.items():
        cols[name] = per_run(getattr(trace, field))
    cols["diverged_at"] = per_run(trace.diverged_at).astype(np.int64)
    return cols


def _result_files(directory: Any) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        what = "is not a directory" if d.exists() else "does not exist"
        raise ValueError(f"results directory {str(directory)!r} {what}")
    files = sorted(p for p in d.glob("*.npz") if not p.name.startswith("."))
    if not files:
        raise ValueError(f"results directory {str(directory)!r} holds no result files (*.npz)")
    return files


def _uniform(values: list[Any]) -> list[Any]:
    """A config column: as is when its values share a type family (numbers, strings,
    booleans; None is missing), else every value as JSON text."""

    def family(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        return "number" if isinstance(v, int | float) else type(v).__name__

    kinds = {family(v) for v in values if v is not None}
    if len(kinds) <= 1:
        return values
    return [None if v is None else json.dumps(v) for v in values]


def results_columns(
    directory: Any, *, steps: str = "final", every: int = 1
) -> dict[str, np.ndarray | list[Any]]:
    """Every result file of ``directory`` as columns of one table (module docstring), rows
    in file-name order (so the same whichever process wrote which file), then batch entry,
    then step. Config and meta columns are lists (None where a file lacks the field);
    metric columns numpy arrays (NaN where a file lacks the metric).

    Args:
        directory: a result directory (``ratedist simulate --out``).
        steps: ``"final"`` (one row per run and replica) or ``"all"``.
        every: with ``steps="all"``, every ``every``-th step (and the last).

    Raises:
        ValueError: a bad ``steps``/``every``, a missing directory or one without results,
            a file that cannot be read as a result (the message names it).
    """
    check_choice("steps", steps, STEP_CHOICES)
    check_int("every", every, min_value=1)
    per_file = []
    for path in _result_files(directory):
        try:
            trace, config, meta = load_trace(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"result file {str(path)!r} cannot be read: {exc}") from exc
        cols = trace_columns(
            trace, replicas=config.get("replicas") is not None, steps=steps, every=every
        )
        info = {
            "hash": path.stem,
            **flatten_config(config),
            **flatten_config(meta, "meta."),
        }
        per_file.append((info, cols))
    # hash, then config fields, then meta, each alphabetical (as canonical JSON orders them)
    info_keys = sorted(
        {k for info, _ in per_file for k in info},
        key=lambda k: (k != "hash", k.startswith("meta."), k),
    )
    metric_keys = list(dict.fromkeys(k for _, cols in per_file for k in cols))
    out: dict[str, Any] = {}
    for key in info_keys:
        values = [info.get(key) for info, _ in per_file]
        values = _uniform(values)
        out[key] = [v for v, (_, cols) in zip(values, per_file, strict=True) for _ in cols["step"]]
    for key in metric_keys:
        parts = [
            cols[key] if key in cols else np.full(len(cols["step"]), np.nan) for _, cols in per_file
        ]
        out[key] = np.concatenate(parts)
    return out


def load_results(directory: Any, *, steps: str = "final", every: int = 1) -> Any:
    """:func:`results_columns` as a pandas DataFrame, e.g.
    ``load_results("results/sweep").groupby("algorithm.compressor")["f_gap"].median()``.

    Raises:
        ValueError: pandas is not installed (``pip install 'ratedist[cluster]'``), or as
            :func:`results_columns`.
    """
    if pd is None:
        raise ValueError("load_results needs pandas: pip install 'ratedist[cluster]'")
    return pd.DataFrame(results_columns(directory, steps=steps, every=every))
