"""Atomic result files: one ``.npz`` per finished run, named by a hash of its canonical config.

A file is written to a temporary name in the target directory, flushed, fsynced and moved in
place with ``os.replace`` (atomic on POSIX), so a killed sweep leaves either a complete file
or none — never a partial one — and a re-run skips exactly the finished configs.

A file's bytes are a function of its trace, config and meta alone: the zip members carry a
fixed date (1980-01-01, the zip format's epoch) instead of the time of writing, so two
processes that run the same config write identical files, and a result directory written by
several processes (``ratedist simulate --shard``) is byte for byte the one a single process
writes.

Several processes may share one directory (the shards of a job array, a Dask cluster, a
second copy of the same shard). A process *claims* a config before running it
(:meth:`ResultStore.claim`): a ``<hash>.claim`` file holding ``host``, ``pid``, ``time`` and a
random ``token``, created exclusively (written to a temporary sibling, then ``os.link``-ed to
its name, which fails if the name exists: the claim appears with its content complete, and
the scheme works on NFS where ``O_EXCL`` historically did not). A claim is *stale* when its
holder is a dead pid on this host, or it is older than ``timeout_s`` (a holder on another
host cannot be checked for life); a stale claim is taken over. Claims only avoid duplicate
work: two processes that do run the same config (a takeover race, a timeout shorter than a
run) write the same bytes through atomic renames, so the store stays consistent either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import secrets
import socket
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ratedist._io import _pid_alive, _umask, atomic_write
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
    atomic_write(path, lambda fh: _savez_reproducible(fh, arrays))
    return path


#: The date of every zip member: the zip format's epoch, so that bytes do not depend on when
#: a file was written.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _savez_reproducible(fh: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez(fh, **arrays)`` with every member dated :data:`_ZIP_DATE` (``np.savez``
    stamps the time of writing), members in ``np.savez``'s order and format."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with (
        zipfile.ZipFile(buf) as src,
        zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as dst,
    ):
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=_ZIP_DATE)
            member.external_attr = info.external_attr
            dst.writestr(member, src.read(info))


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


#: Default age (seconds) after which a claim is stale whoever holds it: a claim of a process
#: on another host (whose life cannot be checked from here) blocks its config this long after
#: that process dies. Longer than a typical run of a sweep config; a run that outlasts it may
#: be run a second time by another process, which is harmless (identical bytes).
CLAIM_TIMEOUT_S = 6 * 3600.0


class Claim(NamedTuple):
    """A config claimed by this process: its claim file and the random token written in it."""

    path: Path
    token: str


def read_claim(path: Any) -> dict[str, Any] | None:
    """The holder of a claim file: ``{"host", "pid", "time", "token"}``, ``{}`` when the file
    is not a claim this module wrote, None when there is no such file."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return _parse_claim(raw)


def _parse_claim(raw: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def claim_is_stale(
    holder: Mapping[str, Any], *, timeout_s: float, now: float, mtime: float
) -> bool:
    """Whether a claim may be taken over: older than ``timeout_s`` (by its recorded ``time``,
    or the file's ``mtime`` when it records none), or held by a dead pid on this host."""
    t = holder.get("time")
    age = now - (float(t) if isinstance(t, int | float) else mtime)
    if age > timeout_s:
        return True
    pid = holder.get("pid")
    return (
        holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)
    )


def _link_exclusive(path: Path, content: bytes) -> bool:
    """Create ``path`` holding ``content``, atomically and only if it does not exist (written
    to a temporary sibling that is then hard-linked to ``path``); True if created."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _take_over(path: Path, seen: bytes) -> bool:
    """Remove the stale claim ``path`` whose content was ``seen``; False when the file there
    is now another (a fresh claim made since it was read), which is then put back."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # taken over or released meanwhile: try to create it again
        return True
    try:
        if aside.read_bytes() == seen:
            return True
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # a fresh claim: restore it unless a newer one exists
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)


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

    def claim_path(self, config: Mapping[str, Any]) -> Path:
        return self.directory / f"{config_hash(config)}.claim"

    def claim(
        self,
        config: Mapping[str, Any],
        *,
        timeout_s: float = CLAIM_TIMEOUT_S,
        now: float | None = None,
    ) -> Claim | None:
        """Claim ``config`` for this process; None when another live process holds it.

        A stale claim (:func:`claim_is_stale`) is taken over. See the module docstring for
        what claims guarantee (no duplicate work in the usual case) and what they need not
        (the store is consistent even when two processes run the same config).

        Args:
            config: the run config.
            timeout_s: age in seconds after which any claim is stale (0: take over every
                claim, live or not).
            now: the current POSIX time (default ``time.time()``).

        Raises:
            TypeError: ``timeout_s`` not a number.  ValueError: ``timeout_s`` negative or NaN.
        """
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise TypeError(f"timeout_s must be a number of seconds, got {timeout_s!r}")
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0 seconds, got {timeout_s!r}")
        path = self.claim_path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        for _ in range(3):  # a takeover, then one more race, then give up
            stamp = time.time() if now is None else float(now)
            content = json.dumps(
                {"host": socket.gethostname(), "pid": os.getpid(), "time": stamp, "token": token},
                sort_keys=True,
            ).encode()
            if _link_exclusive(path, content):
                return Claim(path, token)
            try:
                raw, mtime = path.read_bytes(), path.stat().st_mtime
            except FileNotFoundError:  # released meanwhile
                continue
            holder = _parse_claim(raw)
            if not claim_is_stale(holder, timeout_s=timeout_s, now=stamp, mtime=mtime):
                return None
            if not _take_over(path, raw):
                return None
        return None

    def release(self, claim: Claim) -> None:
        """Remove ``claim``'s file if it still holds this claim's token (a process that took
        it over keeps its own)."""
        holder = read_claim(claim.path)
        if holder is not None and holder.get("token") == claim.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim.path)

    def holder(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """Who holds ``config``'s claim (:func:`read_claim`), None if nobody."""
        return read_claim(self.claim_path(config))

    def __iter__(self) -> Iterator[tuple[Trace, dict[str, Any], dict[str, Any]]]:
        """All finished results, in file-name order."""
        for p in sorted(self.directory.glob("*.npz")):
            yield load_trace(p)
