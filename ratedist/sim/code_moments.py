"""Moments of a gradient code's decoding weights under a straggler law (the inputs of the
1-bit gradient-coding bounds, :mod:`ratedist.bounds.gradient_coding`).

:func:`decoding_moments` evaluates the code's own decoder (``code.vector``, jitted and
vmapped) on the masks of a participation model and averages: exactly, over every mask with
its probability, when there are at most ``max_masks`` of them; else over a seeded Monte Carlo
sample (``exact=False`` in the result). The laws are those of :mod:`ratedist.sim.stages`,
enrolled in :data:`STRAGGLER_LAWS` by the participation's config name:

===========  ==================================================  ===========================
law          masks                                               exact when
===========  ==================================================  ===========================
all          one mask, everyone answers                          always
bernoulli    every subset, ``P = p^#straggling (1 − p)^#answering``  ``2^n <= max_masks``
exactly      every ``s``-subset straggling, uniform               ``C(n, s) <= max_masks``
pattern      the rows of the given table, uniform (each step's)   always
===========  ==================================================  ===========================
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ratedist._registry import Registry
from ratedist._validation import check_int
from ratedist.bounds.gradient_coding import DecodingMoments, decoding_moments_from_weights
from ratedist.sim.codes import GradientCode, decoding_vectors
from ratedist.sim.stages import Participation


class MaskLaw(NamedTuple):
    """Masks of a straggler law: bool ``(M, n)`` (True = answers), their probabilities (None:
    equal weights), whether they enumerate the law, and a label."""

    masks: np.ndarray
    probs: np.ndarray | None
    exact: bool
    label: str


#: participation config name -> ``(config, n, max_masks, samples, rng) -> MaskLaw``.
STRAGGLER_LAWS: Registry[Callable[..., MaskLaw]] = Registry("straggler law")


@STRAGGLER_LAWS.register("all")
def _law_all(config: Mapping[str, Any], n: int, max_masks: int, samples: int, rng) -> MaskLaw:
    return MaskLaw(np.ones((1, n), bool), np.ones(1), True, "everyone answers")


@STRAGGLER_LAWS.register("bernoulli")
def _law_bernoulli(config: Mapping[str, Any], n: int, max_masks: int, samples: int, rng) -> MaskLaw:
    p = float(config["p"])
    label = f"Bernoulli(p={p:g}) stragglers"
    if 2**n <= max_masks:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        masks = bits == 0  # bit set = straggles
        strag = bits.sum(axis=1)
        probs = p**strag * (1 - p) ** (n - strag)
        keep = probs > 0
        return MaskLaw(masks[keep], probs[keep], True, f"{label}, all 2^{n} masks")
    masks = rng.random((samples, n)) >= p
    return MaskLaw(masks, None, False, f"{label}, {samples} sampled masks")


@STRAGGLER_LAWS.register("exactly")
def _law_exactly(config: Mapping[str, Any], n: int, max_masks: int, samples: int, rng) -> MaskLaw:
    s = int(config["s"])
    if s >= n:
        raise ValueError(f"s must be < n_workers = {n} for 'exactly' stragglers, got {s}")
    label = f"exactly {s} stragglers (uniform)"
    if math.comb(n, s) <= max_masks:
        rows = []
        for strag in itertools.combinations(range(n), s):
            mask = np.ones(n, bool)
            mask[list(strag)] = False
            rows.append(mask)
        return MaskLaw(np.stack(rows), None, True, f"{label}, all C({n},{s}) patterns")
    masks = rng.random((samples, n)).argsort(axis=1) >= s
    return MaskLaw(masks, None, False, f"{label}, {samples} sampled patterns")


@STRAGGLER_LAWS.register("pattern")
def _law_pattern(config: Mapping[str, Any], n: int, max_masks: int, samples: int, rng) -> MaskLaw:
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
    """The :class:`MaskLaw` of a participation model for ``n`` workers.

    Raises:
        ValueError: a participation kind without a registered law, bad sizes.
        TypeError: ``participation`` not a Participation.
    """
    if not isinstance(participation, Participation):
        raise TypeError(
            "participation must be a ratedist.sim Participation (e.g. bernoulli_stragglers(p)), "
            f"got {type(participation).__name__}"
        )
    n = check_int("n", n, min_value=1)
    max_masks = check_int("max_masks", max_masks, min_value=1)
    samples = check_int("samples", samples, min_value=2)
    seed = check_int("seed", seed, min_value=0)
    law = STRAGGLER_LAWS.get(participation.config["participation"])
    if participation.check is not None:
        participation.check(n)
    return law(participation.config, n, max_masks, samples, np.random.default_rng(seed))


def decoding_moments(
    code: GradientCode,
    participation: Participation,
    *,
    max_masks: int = 1 << 16,
    samples: int = 20000,
    seed: int = 0,
) -> DecodingMoments:
    """``E[a_i^2]``, ``E||a||^2``, ``max ||a||^2``, ``E c`` and ``E[(c − 1)(c − 1)^T]`` of
    ``code``'s decoder under ``participation`` (see the module docstring for which laws are
    enumerated exactly).

    Args:
        code: a :class:`~ratedist.sim.codes.GradientCode`.
        participation: the straggler model (``everyone()``, ``bernoulli_stragglers(p)``,
            ``exactly_stragglers(s)``, ``pattern_stragglers(mask)``).
        max_masks: enumerate the law when it has at most this many masks.
        samples: Monte Carlo masks otherwise.
        seed: seed of the Monte Carlo masks.

    Returns:
        :class:`~ratedist.bounds.gradient_coding.DecodingMoments` (``exact`` says which).

    Raises:
        TypeError: ``code`` not a GradientCode or ``participation`` not a Participation.
        ValueError: as :func:`straggler_masks_of`.
    """
    if not isinstance(code, GradientCode):
        raise TypeError(f"code must be a GradientCode (see CODES), got {type(code).__name__}")
    law = straggler_masks_of(
        participation, code.n_workers, max_masks=max_masks, samples=samples, seed=seed
    )
    a = decoding_vectors(code, law.masks)
    return decoding_moments_from_weights(
        a, code.B, law.probs, law=f"{code.name}: {law.label}", exact=law.exact
    )
