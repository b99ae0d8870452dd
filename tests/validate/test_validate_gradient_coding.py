"""The gradient-coding and 1-bit quantizer rows of ``ratedist validate``."""

from ratedist.validate import CHECKS, run_checks


def test_gradient_coding_and_one_bit_checks_hold():
    rows = run_checks(["gradient_coding", "one_bit_quantizer"], quick=True)
    names = [r.check for r in rows]
    assert sum(n.startswith("gradient_coding[") for n in names) == 6
    assert sum(n.startswith("one_bit_quantizer[") for n in names) == 6
    bad = [r for r in rows if r.verdict != "holds"]
    assert not bad, bad
    by_name = {r.check: r for r in rows}
    assert by_name["gradient_coding[frc:n=6,s=2]"].measured <= 1e-14
    assert by_name["gradient_coding[crc:n=12,s=3]"].measured <= 1e-8
    assert CHECKS.facts("gradient_coding")["quick"] and CHECKS.facts("one_bit_quantizer")["quick"]
