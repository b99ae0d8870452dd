"""File output: atomic writes, output paths checked before the work, stale temporaries swept.

A result file is either complete or absent, never half-written: :func:`atomic_write` writes
into a temporary sibling named ``.<name>.<pid>.<random>.tmp`` and moves it in place. The pid
in the name tells :func:`remove_stale_temporaries` whether the writer may still be alive, so
that an orphan left by a killed writer (SIGKILL runs no cleanup) can be removed by a later
run without ever touching the temporary file of a live one.

:func:`check_output_file` and :func:`check_output_dir` let a command fail in one line before
a long computation rather than lose it to an unwritable path afterwards.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

#: ``.<name>.<pid>.<random>.tmp`` (this module's temporaries; mkstemp's random part has no dot).
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<rand>[^.]+)\.tmp$")
#: ``.<name>.<random>.tmp``: temporaries of earlier versions, whose names carry no pid.
_LEGACY_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<rand>[^.]+)\.tmp$")
#: How long before a run a pid-less temporary must have been last written for the run to
#: treat it as an orphan (no live writer leaves its file untouched that long mid-write).
LEGACY_TEMP_AGE_S = 3600.0


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def atomic_write(path: Path, writer: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``writer(fh)`` into a temporary sibling, fsync, then ``os.replace``.

    The temporary file (``.<name>.<pid>.<random>.tmp``) is removed if ``writer`` raises (or
    the write is interrupted), so an interrupted run loses nothing that was already complete
    and leaves no partial file; one left by a killed process is removed by
    :func:`remove_stale_temporaries`. The file gets the mode a plain ``open(path, "w")``
    would give (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------- output paths, up front
def _why(exc: OSError) -> str:
    return exc.strerror or str(exc).splitlines()[0] or type(exc).__name__


def _probe_writable(directory: Path, what: str) -> None:
    """Create and remove a temporary file in ``directory`` (``os.access`` trusts root)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(Path("probe")), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ValueError(
            f"{what}: cannot write in directory {str(directory)!r}: {_why(exc)}"
        ) from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: Any, *, option: str) -> Path:
    """Check, before any work, that ``path`` can be written as a regular file.

    The parent directory must exist and accept new files (a probe file is created and
    removed there), and ``path`` must not already be something other than a regular file
    (a directory, a device such as ``/dev/null``, a pipe).

    Args:
        path: the output file.
        option: how the user gave it (``"--plot"``), named in the error.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: naming ``option``, the path and what is wrong with it.
    """
    p = Path(path)
    what = f"{option} {str(path)!r}"
    if not str(path):
        raise ValueError(f"{option} must be a file path, got ''")
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a component is not a directory, a loop, ...
        raise ValueError(f"{what}: cannot write there: {_why(exc)}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ValueError(f"{what} is {kind}; give a file path")
    parent = p.parent
    if not parent.exists():
        raise ValueError(f"{what}: directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise ValueError(f"{what}: {str(parent)!r} is not a directory")
    _probe_writable(parent, what)
    return p


def check_output_dir(path: Any, *, option: str) -> Path:
    """Create ``path`` (with its parents) if needed and check that files can be written in it.

    Args:
        path: the output directory.
        option: how the user gave it (``"--out"``), named in the error.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: naming ``option``, the path and what is wrong with it.
    """
    p = Path(path)
    what = f"{option} {str(path)!r}"
    if not str(path):
        raise ValueError(f"{option} must be a directory path, got ''")
    if p.exists() and not p.is_dir():
        raise ValueError(f"{what} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{what}: cannot create the directory: {_why(exc)}") from None
    _probe_writable(p, what)
    return p


# -------------------------------------------------------------- orphaned temporaries
def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a zombie counts)."""
    if pid <= 0:  # os.kill(0, ...) and negative pids address process groups
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True  # unknown: keep the file
    return True


def remove_stale_temporaries(directory: Any, *, before: float | None = None) -> list[Path]:
    """Remove the temporaries that killed writers left in ``directory``; return them.

    A temporary of :func:`atomic_write` (``.<name>.<pid>.<random>.tmp``) is removed when its
    writer's pid is not alive on this machine and it was last modified before ``before``
    (the start of the run: a writer on another machine sharing the directory keeps its file
    fresh while it writes). A pid-less ``.<name>.<random>.tmp`` of an earlier version is
    removed when it was last modified :data:`LEGACY_TEMP_AGE_S` or more before ``before``.
    A temporary of a live writer is never removed.

    Args:
        directory: the results directory (a missing one holds nothing).
        before: a POSIX time, default now.

    Returns:
        The paths removed, sorted.
    """
    before = time.time() if before is None else float(before)
    d = Path(directory)
    if not d.is_dir():
        return []
    removed = []
    for entry in sorted(d.iterdir()):
        m = _TEMP_RE.match(entry.name)
        if m is not None:
            stale = not _pid_alive(int(m["pid"]))
            cutoff = before
        elif _LEGACY_TEMP_RE.match(entry.name):
            stale, cutoff = True, before - LEGACY_TEMP_AGE_S
        else:
            continue
        try:
            st = entry.lstat()
            if stale and stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                entry.unlink()
                removed.append(entry)
        except FileNotFoundError:  # its writer finished or another sweep removed it
            continue
    return removed
