"""benchmarks/bench_gpu.py: its byte model (the denominator of the bandwidth fraction) and a
CPU smoke run of ``--quick`` (the GPU numbers themselves are not measured by the tests)."""

import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(BENCH), run_name="bench_gpu")


def test_minimal_bytes_per_step_at_the_target_size(bench):
    # N = 128 workers, d = 1e7 float32: each worker reads and writes its d-vector state
    # (2 x 128 x 4e7 bytes = 10.24e9) and the server reads and writes x (2 x 4e7 = 8e7)
    assert bench["min_bytes_per_step"](128, 10**7) == 10_240_000_000 + 80_000_000
    assert bench["min_bytes_per_step"](128, 10**7, passes=3) == 15_360_000_000 + 80_000_000
    # the 50 % goal on an H200 (4.8 TB/s): 0.5 x 4.8e12 / 1.032e10 = 232.6 steps/s
    rate = 0.5 * bench["PEAK_GBPS"]["H200"] * 1e9 / bench["min_bytes_per_step"](128, 10**7)
    assert 232 < rate < 233


def test_peak_comes_from_the_device_kind_or_the_flag(bench):
    class Dev:
        device_kind = "NVIDIA H200"

    assert bench["peak_gbps"](Dev(), None) == 4800.0
    assert bench["peak_gbps"](Dev(), 1000.0) == 1000.0
    Dev.device_kind = "cpu"
    assert bench["peak_gbps"](Dev(), None) is None


@pytest.mark.slow
def test_quick_run_on_cpu(bench, capsys):
    rows = bench["main"](["--quick", "--repeats", "1"])
    assert [r[0] for r in rows] == list(bench["METHODS"])
    assert all(r[2] > 0 for r in rows)
    assert "not the GPU numbers" in capsys.readouterr().out
