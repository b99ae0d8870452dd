"""Moments of a gradient code's decoding weights under a straggler law (the inputs of the
1-bit gradient-coding bounds, :mod:`ratedist.bounds.gradient_coding`).

:func:`decoding_moments` evaluates the code's own decoder (``code.vector``, jitted and
vmapped) on the masks of a participation model and averages them, exactly, over every mask
with its probability when there are at most ``max_masks`` of them. Past that it uses the
closed form of the (code, law) pair when one is enrolled in :data:`CLOSED_FORMS`, and else a
seeded Monte Carlo sample of masks (``exact=False`` in the result). The laws are those of
:mod:`ratedist.sim.stages`, enrolled in :data:`STRAGGLER_LAWS` by the participation's config
name:

===========  ==================================================  ===========================
law          masks                                               enumerated when
===========  ==================================================  ===========================
all          one mask, everyone answers                          always
bernoulli    every subset, ``P = p^#straggling (1 − p)^#answering``  ``2^n <= max_masks``
exactly      every ``s``-subset straggling, uniform               ``C(n, s) <= max_masks``
pattern      the rows of the given table, uniform (each step's)   always
===========  ==================================================  ===========================

Closed forms (:mod:`ratedist.bounds.gradient_coding`): probability rescaling under Bernoulli
stragglers, count rescaling (and uncoded) and FRC (``s' <= s``) under exactly ``s'``
stragglers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ratedist._registry import Registry
from ratedist._validation import check_int
from ratedist.bounds.decoding_moments import (
    DecodingMoments,
    count_rescaling_moments,
    decoding_moments_from_weights,
    frc_moments,
    probability_rescaling_moments,
)
from ratedist.sim.codes import GradientCode, decoding_vectors, exact_straggler_masks
from ratedist.sim.stages import Participation


class MaskLaw(NamedTuple):
    """Masks of a straggler law: bool ``(M, n)`` (True = answers), their probabilities (None:
    equal weights), whether they enumerate the law, and a label."""

    masks: np.ndarray
    probs: np.ndarray | None
    exact: bool
    label: str


#: participation config name -> ``(config, n, enumerate: bool, samples, rng) -> MaskLaw``;
#: fact ``size``: ``(config, n) -> number of masks of the law``.
STRAGGLER_LAWS: Registry[Callable[..., MaskLaw]] = Registry("straggler law")


@STRAGGLER_LAWS.register("all", size=lambda config, n: 1)
def _law_all(config: Mapping[str, Any], n: int, enumerate_: bool, samples: int, rng) -> MaskLaw:
    return MaskLaw(np.ones((1, n), bool), np.ones(1), True, "everyone answers")


@STRAGGLER_LAWS.register("bernoulli", size=lambda config, n: 2**n)
def _law_bernoulli(
    config: Mapping[str, Any], n: int, enumerate_: bool, samples: int, rng
) -> MaskLaw:
    p = float(config["p"])
    label = f"Bernoulli(p={p:g}) stragglers"
    if enumerate_:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        masks = bits == 0  # bit set = straggles
        strag = bits.sum(axis=1)
        probs = p**strag * (1 - p) ** (n - strag)
        keep = probs > 0
        return MaskLaw(masks[keep], probs[keep], True, f"{label}, all 2^{n} masks")
    masks = rng.random((samples, n)) >= p
    return MaskLaw(masks, None, False, f"{label}, {samples} sampled masks")


@STRAGGLER_LAWS.register("exactly", size=lambda config, n: math.comb(n, int(config["s"])))
def _law_exactly(config: Mapping[str, Any], n: int, enumerate_: bool, samples: int, rng) -> MaskLaw:
    s = int(config["s"])
    label = f"exactly {s} stragglers (uniform)"
    if enumerate_:
        masks = exact_straggler_masks(n, s)
        return MaskLaw(masks, None, True, f"{label}, all C({n},{s}) patterns")
    masks = rng.random((samples, n)).argsort(axis=1) >= s
    return MaskLaw(masks, None, False, f"{label}, {samples} sampled patterns")


@STRAGGLER_LAWS.register("pattern", size=lambda config, n: len(config["mask"]))
def _law_pattern(config: Mapping[str, Any], n: int, enumerate_: bool, samples: int, rng) -> MaskLaw:
    masks = np.asarray(config["mask"], dtype=bool)
    return MaskLaw(masks, None, True, f"the given {masks.shape[0]}-step pattern (uniform)")


def straggler_masks_of(
    participation: Participation,
    n: int,
    *,
    max_masks: int = 1 << 16,
    samples: int = 20000,
    seed: int = 0,
) -> MaskLaw:
    """The :class:`MaskLaw` of a participation model for ``n`` workers: every mask when there
    are at most ``max_masks`` (a ``"pattern"`` table always), else ``samples`` drawn with a
    numpy generator seeded by ``seed``.

    Raises:
        ValueError: a participation kind without a registered law, a model that does not fit
            ``n`` workers, bad sizes.
        TypeError: ``participation`` not a Participation.
    """
    name, n, max_masks, samples, seed = _check_law(participation, n, max_masks, samples, seed)
    enum = name == "pattern" or _law_size(participation, n) <= max_masks
    law = STRAGGLER_LAWS.get(name)
    return law(participation.config, n, enum, samples, np.random.default_rng(seed))


def _check_law(participation: Any, n: Any, max_masks: Any, samples: Any, seed: Any):
    if not isinstance(participation, Participation):
        raise TypeError(
            "participation must be a ratedist.sim Participation (e.g. bernoulli_stragglers(p)), "
            f"got {type(participation).__name__}"
        )
    n = check_int("n", n, min_value=1)
    max_masks = check_int("max_masks", max_masks, min_value=1)
    samples = check_int("samples", samples, min_value=2)
    seed = check_int("seed", seed, min_value=0)
    name = participation.config["participation"]
    STRAGGLER_LAWS.entry(name)  # unknown kinds raise here, naming the known ones
    if participation.check is not None:
        participation.check(n)
    return name, n, max_masks, samples, seed


def _law_size(participation: Participation, n: int) -> int:
    name = participation.config["participation"]
    return int(STRAGGLER_LAWS.facts(name)["size"](participation.config, n))


# ------------------------------------------------------------------------------ closed forms
#: ``"<code kind>:<law>"`` -> ``(code, law config) -> DecodingMoments | None`` (None: the
#: closed form does not apply to this instance). The code kind is ``config["code"]``, with
#: ``/<rescale>`` for random replication.
CLOSED_FORMS: Registry[Callable[..., DecodingMoments | None]] = Registry("closed-form moments")


@CLOSED_FORMS.register("random_replication/probability:bernoulli")
def _closed_probability(code: GradientCode, config: Mapping[str, Any]) -> DecodingMoments:
    return probability_rescaling_moments(code.B, p=code.config["p"], law_p=config["p"])


@CLOSED_FORMS.register("random_replication/count:exactly")
def _closed_count(code: GradientCode, config: Mapping[str, Any]) -> DecodingMoments:
    return count_rescaling_moments(code.B, stragglers=config["s"])


@CLOSED_FORMS.register("uncoded:exactly")
def _closed_uncoded(code: GradientCode, config: Mapping[str, Any]) -> DecodingMoments:
    return count_rescaling_moments(code.B, stragglers=config["s"])


@CLOSED_FORMS.register("frc:exactly")
def _closed_frc(code: GradientCode, config: Mapping[str, Any]) -> DecodingMoments | None:
    if int(config["s"]) > code.s:
        return None  # whole groups may straggle: no longer exact
    return frc_moments(code.n_workers, code.s, config["s"])


def _code_kind(code: GradientCode) -> str:
    kind = str(code.config.get("code", ""))
    rescale = code.config.get("rescale")
    return f"{kind}/{rescale}" if rescale else kind


def decoding_moments(
    code: GradientCode,
    participation: Participation,
    *,
    max_masks: int = 1 << 16,
    samples: int = 20000,
    seed: int = 0,
) -> DecodingMoments:
    """``E[a_i^2]``, ``E||a||^2``, ``max ||a||^2``, ``E c`` and ``E[(c − 1)(c − 1)^T]`` of
    ``code``'s decoder under ``participation``: by enumeration (at most ``max_masks`` masks),
    else a closed form (:data:`CLOSED_FORMS`), else a Monte Carlo sample of ``samples`` masks
    (see the module docstring).

    Args:
        code: a :class:`~ratedist.sim.codes.GradientCode`.
        participation: the straggler model (``everyone()``, ``bernoulli_stragglers(p)``,
            ``exactly_stragglers(s)``, ``pattern_stragglers(mask)``).
        max_masks: enumerate the law when it has at most this many masks.
        samples: Monte Carlo masks otherwise.
        seed: seed of the Monte Carlo masks.

    Returns:
        :class:`~ratedist.bounds.decoding_moments.DecodingMoments` (``exact`` says whether it
        is an expectation or an estimate; ``masks`` is 0 for a closed form).

    Raises:
        TypeError: ``code`` not a GradientCode or ``participation`` not a Participation.
        ValueError: as :func:`straggler_masks_of`.
    """
    if not isinstance(code, GradientCode):
        raise TypeError(f"code must be a GradientCode (see CODES), got {type(code).__name__}")
    n = code.n_workers
    name, n, max_masks, samples, seed = _check_law(participation, n, max_masks, samples, seed)
    if name != "pattern" and _law_size(participation, n) > max_masks:
        form = f"{_code_kind(code)}:{name}"
        if form in CLOSED_FORMS:
            out = CLOSED_FORMS.get(form)(code, participation.config)
            if out is not None:
                return out._replace(law=f"{code.name}: {out.law}")
    law = straggler_masks_of(participation, n, max_masks=max_masks, samples=samples, seed=seed)
    a = decoding_vectors(code, law.masks)
    return decoding_moments_from_weights(
        a, code.B, law.probs, law=f"{code.name}: {law.label}", exact=law.exact
    )
