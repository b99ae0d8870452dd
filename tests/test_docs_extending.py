"""The page on adding components (docs/extending.md) runs exactly as written.

Its examples register a compressor, an algorithm and a source, so they run in a fresh
interpreter: the registries of this test session stay untouched.
"""

import pathlib
import re
import subprocess
import sys

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_extending_page_examples_run_in_a_fresh_interpreter():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) == 3, "one example each: compressor, algorithm, source"
    script = "\n".join(
        f"exec(compile({b!r}, {str(PAGE)!r}, 'exec'), {{'__name__': 'docs_example'}})"
        for b in blocks
    )
    # The last example enrols `logistic`; the command line must then accept it.
    script += (
        "\nfrom ratedist import cli"
        "\nassert cli.main(['levels', '--source', 'logistic', '--scale', '0.7',"
        " '--method', 'lloyd-max', '--bits', '2']) == 0"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
