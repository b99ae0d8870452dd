"""``parse_spec`` / ``make``: the string syntax the CLI uses, and its error messages."""

from __future__ import annotations

import pytest

from ratedist.compressors import COMPRESSORS, make, parse_spec


def test_parse_spec_types_values():
    assert parse_spec("top-k:k=10") == ("top-k", {"k": 10})
    assert parse_spec(" top-k : k = 10 , float_bits=16 ") == ("top-k", {"k": 10, "float_bits": 16})
    assert parse_spec("threshold:kappa=0.05") == ("threshold", {"kappa": 0.05})
    assert parse_spec("top-k:k=1e3") == ("top-k", {"k": 1000})
    assert parse_spec("sign") == ("sign", {})
    assert parse_spec("scalar:method=lloyd-max,bits=3") == (
        "scalar",
        {"method": "lloyd-max", "bits": 3},
    )


def test_make_forms_are_equivalent():
    a, b, c = make("top-k:k=3"), make("top-k", k=3), make(name="top-k", k=3)
    assert a.facts.params == b.facts.params == c.facts.params == {"k": 3, "float_bits": 32}
    assert a.facts.alpha(100) == b.facts.alpha(100) == c.facts.alpha(100) == 0.03
    assert make("qsgd:s=4", float_bits=16).facts.params["float_bits"] == 16


def test_every_registered_example_builds_through_make():
    for name in COMPRESSORS.names():
        for ex in COMPRESSORS.facts(name)["examples"]:
            assert make(name, **ex).facts.name == name


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("no-such:k=1", "no-such"),
        ("top-k:kk=1", "kk"),
        ("top-k:k=abc", "k"),
        ("top-k:k=1.5", "k"),
        ("threshold:kappa=lots", "kappa"),
        ("top-k:k", "'k'"),
        ("top-k:k=1,k=2", "k"),
        (":k=1", "name"),
        ("scalar:quantizer=x", "quantizer"),
        ("sign:k=1", "k"),
    ],
)
def test_parse_spec_errors_name_the_culprit(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_make_errors_name_the_culprit():
    with pytest.raises(ValueError, match="foo"):
        make("top-k:k=3", foo=1)
    with pytest.raises(ValueError, match="k"):
        make("top-k:k=3", k=4)
    with pytest.raises(ValueError, match="make"):
        make()
    with pytest.raises(ValueError, match="name"):
        make(name=3)
    with pytest.raises(ValueError, match="spec"):
        make(3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        make("top-k:k=0")
    with pytest.raises(ValueError, match="quantizer"):
        make("scalar")
