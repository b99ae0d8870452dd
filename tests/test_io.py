"""File output: atomic writes (complete or absent, with the mode a plain open() would give),
output paths checked before the work, and the orphans of killed writers swept."""

import os
import stat
import subprocess
import sys
import time

import pytest

from ratedist._io import (
    LEGACY_TEMP_AGE_S,
    atomic_write,
    check_output_dir,
    check_output_file,
    remove_stale_temporaries,
)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_write_honours_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "out.bin", lambda fh: fh.write(b"payload"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == mode
    assert (tmp_path / "out.bin").read_bytes() == b"payload"


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(tmp_path / "out.bin", boom)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_names_its_temporary_with_the_writer_pid(tmp_path):
    seen = []
    atomic_write(tmp_path / "out.bin", lambda fh: seen.extend(os.listdir(tmp_path)))
    (name,) = seen
    assert name.startswith(f".out.bin.{os.getpid()}.") and name.endswith(".tmp")
    assert os.listdir(tmp_path) == ["out.bin"]


# ------------------------------------------------------------------ output paths, up front
def test_check_output_file_accepts_a_new_or_regular_file_and_leaves_nothing(tmp_path):
    assert check_output_file(tmp_path / "x.png", option="--plot") == tmp_path / "x.png"
    (tmp_path / "old.png").write_bytes(b"")
    check_output_file(tmp_path / "old.png", option="--plot")
    assert os.listdir(tmp_path) == ["old.png"]  # the probe file is gone


def _bad_output_files(tmp_path):
    (tmp_path / "file").write_text("x")
    return {
        "missing directory": (tmp_path / "missing" / "x.png", "does not exist"),
        "under a regular file": (tmp_path / "file" / "x.png", "Not a directory"),
        "a directory": (tmp_path, "is a directory"),
        "a character device": (os.devnull, "not a regular file"),
        "empty": ("", "must be a file path"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing directory", "under a regular file", "a directory", "a character device", "empty"],
)
def test_check_output_file_rejects_with_the_option_and_path(tmp_path, case):
    path, why = _bad_output_files(tmp_path)[case]
    with pytest.raises(ValueError, match=why) as exc:
        check_output_file(path, option="--plot")
    assert str(exc.value).startswith("--plot") and str(path) in str(exc.value)


def test_check_output_dir_creates_it_and_rejects_unusable_paths(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b", option="--out").is_dir()
    assert os.listdir(tmp_path / "a" / "b") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--out .*cannot create the directory: Not a directory"):
        check_output_dir(tmp_path / "file" / "sub", option="--out")
    with pytest.raises(ValueError, match=r"--out .*exists and is not a directory"):
        check_output_dir(tmp_path / "file", option="--out")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        check_output_dir(os.devnull, option="--out")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_check_output_paths_probe_rather_than_trust_permission_bits():
    # Root passes os.access(W_OK) on /proc; creating a file there still fails.
    with pytest.raises(ValueError, match="cannot write in directory '/proc'"):
        check_output_dir("/proc", option="--out")
    with pytest.raises(ValueError, match="cannot write in directory '/proc'"):
        check_output_file("/proc/x.png", option="--plot")


# ------------------------------------------------------------------- stale temporaries
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temp(directory, name, age_s):
    path = directory / name
    path.write_bytes(b"partial")
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_remove_stale_temporaries_removes_orphans_and_never_a_live_writers(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = _dead_pid()
        orphan = _temp(tmp_path, f".r.npz.{dead}.abc123.tmp", age_s=60)
        mine = _temp(tmp_path, f".r.npz.{os.getpid()}.abc123.tmp", age_s=60)
        other_live = _temp(tmp_path, f".r.npz.{sleeper.pid}.abc123.tmp", age_s=60)
        fresh = _temp(tmp_path, f".s.npz.{dead}.abc123.tmp", age_s=-60)  # written after start
        legacy_old = _temp(tmp_path, ".r.npz.q1w2e3.tmp", age_s=2 * LEGACY_TEMP_AGE_S)
        legacy_new = _temp(tmp_path, ".r.npz.zz9.tmp", age_s=60)
        result = _temp(tmp_path, "r.npz", age_s=60)
        removed = remove_stale_temporaries(tmp_path, before=time.time())
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(removed) == sorted([orphan, legacy_old])
    assert {p.name for p in tmp_path.iterdir()} == {
        p.name for p in (mine, other_live, fresh, legacy_new, result)
    }
    assert remove_stale_temporaries(tmp_path / "missing") == []
