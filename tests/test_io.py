"""Atomic writes: complete or absent, and with the mode a plain open() would give."""

import os
import stat

import pytest

from ratedist._io import atomic_write


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
