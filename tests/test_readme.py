"""The README's Python examples run exactly as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})


def test_readme_names_every_registered_source_and_design():
    from ratedist.quantizers import DESIGNS
    from ratedist.sources import SOURCES

    text = README.read_text()
    missing = [n for n in (*SOURCES.names(), *DESIGNS.names()) if f"{n}" not in text]
    assert not missing, missing
