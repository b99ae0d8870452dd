"""docs/gradients.md: its Python example runs as written (in a temporary directory)."""

import pathlib
import re

import pytest

pytest.importorskip("sklearn")

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "gradients.md"


def test_docs_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/gradients.md has no python example"
    monkeypatch.chdir(tmp_path)  # the example writes grads/mlp-small
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {"__name__": "docs_example"})
    assert (tmp_path / "grads" / "mlp-small" / "manifest.json").exists()
    assert "gen-gaussian" in capsys.readouterr().out
