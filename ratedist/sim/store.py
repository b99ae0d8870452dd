"""Atomic result files: one ``.npz`` per finished run, named by a hash of its canonical config.

A file is written to a temporary name in the target directory, flushed, fsynced and moved in
place with ``os.replace`` (atomic on POSIX), so a killed sweep leaves either a complete file
or none — never a partial one — and a re-run skips exactly the finished configs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ratedist._io import atomic_write
from ratedist.sim.trace import DIAGNOSTIC_FIELDS, Bits, Trace

_FORMAT = 1
_SCALARS = ("gamma", "A", "B", "steps", "violation_tol")  # arrays over a sweep's points
_BITS = ("bits", "bits_down")
#: fields absent from files written before they were recorded
_OPTIONAL = ("answered", *DIAGNOSTIC_FIELDS)


def canonical_json(config: Mapping[str, Any]) -> str:
    """Canonical JSON of a config: sorted keys, no whitespace, floats as Python repr.

    Raises:
        TypeError: the config holds something JSON cannot represent (a NaN or infinite
            float, an object, a non-string key); the message names its key path, such as
            ``problem.noise_std``.
    """
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        where, value = _first_unserialisable(config) or ("", config)
        at = f" at {where}" if where else ""
        raise TypeError(
            f"config value{at} is {value!r}: configs must be JSON-serialisable "
            "(str/int/float/bool/list/dict, finite numbers, string keys)"
        ) from exc


def _first_unserialisable(obj: Any, path: str = "") -> tuple[str, Any] | None:
    """``(key path, value)`` of the first value JSON cannot represent, or None."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                return where, key
            found = _first_unserialisable(value, where)
            if found:
                return found
        return None
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            found = _first_unserialisable(value, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(obj, float) and not math.isfinite(obj):
        return path, obj
    if obj is None or isinstance(obj, str | int | float):
        return None
    return path, obj


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def save_trace(
    path: Any, trace: Trace, config: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``trace`` with its ``config`` (and JSON-able ``meta``) atomically to ``path``.

    Returns:
        The path written.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for name, value in trace._asdict().items():
        if name in _BITS:
            for bname, b in value._asdict().items() if value is not None else ():
                arrays[f"{name}_{bname}"] = np.asarray(b)
        elif name in _OPTIONAL and value is None:
            continue
        elif name == "hyper":
            hyper = {k: np.asarray(v).tolist() for k, v in (value or {}).items()}
            arrays["hyper_json"] = np.asarray(json.dumps(hyper, sort_keys=True))
        else:
            arrays[name] = np.asarray(value)
    arrays["config_json"] = np.asarray(canonical_json(config))
    arrays["meta_json"] = np.asarray(json.dumps(dict(meta or {}), sort_keys=True, default=str))
    arrays["format"] = np.asarray(_FORMAT)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))
    return path


def load_trace(path: Any) -> tuple[Trace, dict[str, Any], dict[str, Any]]:
    """Read a file written by :func:`save_trace`: ``(trace, config, meta)``."""
    with np.load(Path(path), allow_pickle=False) as z:
        fields = {}
        for f in Trace._fields:
            if f in _BITS:
                have = f"{f}_{Bits._fields[0]}" in z
                fields[f] = Bits(*(z[f"{f}_{b}"] for b in Bits._fields)) if have else None
            elif f == "hyper":
                fields[f] = json.loads(z["hyper_json"].item()) if "hyper_json" in z else None
            elif f in _SCALARS:
                fields[f] = z[f].item() if z[f].ndim == 0 else z[f]
            elif f in _OPTIONAL:
                fields[f] = z[f] if f in z else None
            else:
                fields[f] = z[f]
        config = json.loads(z["config_json"].item())
        meta = json.loads(z["meta_json"].item())
    return Trace(**fields), config, meta


class ResultStore:
    """A directory of results keyed by :func:`config_hash`.

    Args:
        directory: where the ``<hash>.npz`` files live (created on first save).
    """

    def __init__(self, directory: Any) -> None:
        self.directory = Path(directory)

    def path(self, config: Mapping[str, Any]) -> Path:
        return self.directory / f"{config_hash(config)}.npz"

    def done(self, config: Mapping[str, Any]) -> bool:
        """True when a finished result for ``config`` exists."""
        return self.path(config).is_file()

    def save(
        self, config: Mapping[str, Any], trace: Trace, meta: Mapping[str, Any] | None = None
    ) -> Path:
        return save_trace(self.path(config), trace, config, meta)

    def load(self, config: Mapping[str, Any]) -> tuple[Trace, dict[str, Any], dict[str, Any]]:
        return load_trace(self.path(config))

    def __iter__(self) -> Iterator[tuple[Trace, dict[str, Any], dict[str, Any]]]:
        """All finished results, in file-name order."""
        for p in sorted(self.directory.glob("*.npz")):
            yield load_trace(p)
