"""The gc_equal_bits check (quick variant): rows, verdicts and numbers are consistent."""

import math

import pytest

from ratedist.validate import CHECKS, VERDICTS, run_checks, verdict_less


@pytest.mark.slow  # four compiled simulator programs: about 45 s of CPU on 2 cores
def test_gc_equal_bits_quick_rows():
    assert not CHECKS.facts("gc_equal_bits")["quick"]  # an empirical claim: not in --quick
    rows = run_checks(["gc_equal_bits"], quick=True)
    names = [r.check for r in rows]
    assert names == [
        f"gc_equal_bits[{prob}:p={p}:onebit_gc]"
        for prob in ("logistic", "mlp")
        for p in ("0.1", "0.3")
    ]
    for r in rows:
        assert r.verdict in VERDICTS
        # predicted = full_gc's f − f* at the budget, measured = onebit_gc's, error = SE of
        # the paired difference; the verdict is the ordering rule applied to those numbers
        assert all(math.isfinite(v) for v in (r.predicted, r.measured, r.error)), r
        assert r.predicted > 0 and r.measured > 0 and r.error > 0
        assert r.verdict == verdict_less(r.measured, r.predicted, r.error)[0]
        assert "full_gc" in r.detail and "uplink bits" in r.detail and "8 of 8" in r.detail
