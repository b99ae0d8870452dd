"""1-bit gradient coding with stragglers (1-bit GC-DL, arXiv 2403.14716) and its baselines as
named setups of the staged simulator round.

A setup is a worker mechanism (the encoder), whether the workers are coded (a gradient code
re-deals the ``k`` data partitions to ``n`` workers and the server decodes, or every worker
holds one partition and the server ignores whoever straggles), what a coded worker encodes
(its coded combination, ``d`` bits per 1-bit message, or each partition, ``m d`` bits) and
the server's combination rule:

=================  =====  ===========  ===========================  ===========================
method             coded  encodes      mechanism (encoder)          server
=================  =====  ===========  ===========================  ===========================
``onebit_gc``      yes    combination  stochastic sign ``±||y||``    decoding weights
                                       (unbiased, 1 bit + a norm)
``onebit_gc_ef``   yes    combination  EF14 with the scaled sign    decoding weights
                                       (biased, error feedback)
``onebit_gc_mv``   yes    combination  sign                         majority vote of the
                                                                    weighted signs
``full_gc``        yes    combination  none (32-bit floats)         decoding weights
``signsgd``        no     —            scaled sign                  mean of those who answered
``ef_signsgd``     no     —            EF14 with the scaled sign    mean of those who answered
``signsgd_mv``     no     —            sign                         majority vote
``uncoded_full``   no     —            none (32-bit floats)         mean of those who answered
=================  =====  ===========  ===========================  ===========================

Every coded method also takes ``encode="partitions"`` (:func:`ratedist.sim.coded.coded`).
The paper's exact encoder and decoder are not public; this family covers its description
(SPEC §4). Bits are the simulator's wire counts (``Trace.uplink_per_round`` and friends):
``d`` sign bits per 1-bit message plus ``FLOAT_BITS`` for a sent scale, ``32 d`` for a float
vector, nothing from a straggler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ratedist._registry import Registry
from ratedist._validation import check_choice
from ratedist.compressors.spec import make
from ratedist.sim.algorithms import compressed_sgd, ef14, gd
from ratedist.sim.coded import ENCODINGS, coded
from ratedist.sim.codes import DECODE_RULES, GradientCode
from ratedist.sim.method import Algorithm
from ratedist.sim.problems import Problem
from ratedist.sim.round import Round
from ratedist.sim.stages import AGGREGATION, Participation, everyone


class GCMethod(NamedTuple):
    """A named gradient-coding setup (:data:`GC_METHODS`).

    Attributes:
        name: registry name.
        algorithm: ``() -> Algorithm``, the workers' encoder.
        coded: the workers are coded (decoding aggregation) or uncoded (stragglers ignored).
        rule: the server's rule: a key of :data:`ratedist.sim.codes.DECODE_RULES` for coded
            methods (``"decode"``, ``"majority"``), an :data:`~ratedist.sim.stages.AGGREGATION`
            name for uncoded ones (``"mean_active"``, ``"majority"``).
        description: one line.
    """

    name: str
    algorithm: Callable[[], Algorithm]
    coded: bool
    rule: str
    description: str


class GCSetup(NamedTuple):
    """What :func:`gc_setup` returns: ``run(setup.round, setup.problem, ...)``.

    Attributes:
        method: the :class:`GCMethod`.
        round: the simulator round (oracle, encoder, participation, aggregation).
        problem: the problem the round runs on (the coded workers' problem, or the base
            problem for uncoded methods).
        code: the gradient code (None for uncoded methods).
        encode: ``"combination"`` or ``"partitions"`` (None for uncoded methods).
    """

    method: GCMethod
    round: Round
    problem: Problem
    code: GradientCode | None
    encode: str | None


#: Registry of 1-bit GC-DL setups and their baselines.
GC_METHODS: Registry[GCMethod] = Registry("gradient-coding method")


def _method(name: str, algorithm: Callable[[], Algorithm], coded_: bool, rule: str, text: str):
    # coded: a rule on the decoded sum (codes.DECODE_RULES); uncoded: a registered aggregation
    check_choice("rule", rule, tuple(DECODE_RULES) if coded_ else tuple(AGGREGATION.names()))
    GC_METHODS.add(name, GCMethod(name, algorithm, coded_, rule, text))


_method(
    "onebit_gc",
    lambda: compressed_sgd(make("stochastic-sign:scale=l2")),
    True,
    "decode",
    "1-bit GC-DL, unbiased: stochastic sign ±||y||_2 of the coded gradient, decoded",
)
_method(
    "onebit_gc_ef",
    lambda: ef14(make("scaled-sign")),
    True,
    "decode",
    "1-bit GC-DL with error feedback: EF14 with the scaled sign, decoded",
)
_method(
    "onebit_gc_mv",
    lambda: compressed_sgd(make("sign")),
    True,
    "majority",
    "1-bit GC-DL, majority vote: sign(sum_i a_i sign(y_i))",
)
_method(
    "full_gc",
    gd,
    True,
    "decode",
    "gradient coding with 32-bit floats (Tandon et al.), decoded",
)
_method(
    "signsgd",
    lambda: compressed_sgd(make("scaled-sign")),
    False,
    "mean_active",
    "uncoded scaled signSGD, stragglers ignored",
)
_method(
    "ef_signsgd",
    lambda: ef14(make("scaled-sign")),
    False,
    "mean_active",
    "uncoded EF-signSGD (EF14, scaled sign), stragglers ignored",
)
_method(
    "signsgd_mv",
    lambda: compressed_sgd(make("sign")),
    False,
    "majority",
    "uncoded signSGD with majority vote, stragglers ignored",
)
_method(
    "uncoded_full",
    gd,
    False,
    "mean_active",
    "uncoded GD with 32-bit floats, stragglers ignored",
)


def gc_setup(
    method: str,
    problem: Problem,
    code: GradientCode | None = None,
    participation: Participation | None = None,
    *,
    encode: str = "combination",
) -> GCSetup:
    """The simulator round of a registered gradient-coding ``method`` on ``problem``.

    Args:
        method: a :data:`GC_METHODS` name.
        problem: the base problem; its ``n_workers`` are the data partitions.
        code: the gradient code of a coded method (its partitions must be the problem's
            workers); ignored by uncoded methods, which run one partition per worker.
        participation: who answers (default everyone).
        encode: ``"combination"`` or ``"partitions"`` for coded methods.

    Raises:
        ValueError: unknown method or encoding; a coded method without a code.
    """
    m = GC_METHODS.get(method)
    encode = check_choice("encode", encode, ENCODINGS)
    part = everyone() if participation is None else participation
    if not m.coded:
        agg = AGGREGATION.get(m.rule)()
        return GCSetup(m, Round(m.algorithm(), part, agg), problem, None, None)
    if code is None:
        raise ValueError(
            f"method {method!r} is coded: give a code (e.g. make_code('frc', n=..., s=...))"
        )
    c = coded(problem, code, encode=encode)
    rnd = c.round(m.algorithm(), part, aggregation=code.aggregation(rule=m.rule))
    return GCSetup(m, rnd, c.problem, code, encode)


def gc_methods() -> list[tuple[str, str]]:
    """``(name, description)`` of every registered method, in registry order."""
    return [(n, GC_METHODS.get(n).description) for n in GC_METHODS.names()]
