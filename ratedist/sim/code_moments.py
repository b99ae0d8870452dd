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

The worst case instead of the average: :func:`adversarial_mask` enumerates the patterns of
``r`` stragglers and returns the one with the largest decoding residual (or, for an exact
code, the largest ``||a||^2``); :func:`adversarial_stragglers` is the participation model
that repeats it at every step (``"adversarial"`` in ``PARTICIPATION``).
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
from ratedist.sim.stages import PARTICIPATION, Participation, pattern_stragglers


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


# ------------------------------------------------------------------ adversarial stragglers

#: Most patterns :func:`adversarial_mask` enumerates (``C(n, r)``).
ADVERSARIAL_MAX_PATTERNS = 200_000


class Adversary(NamedTuple):
    """The worst straggler pattern of a code (:func:`adversarial_mask`).

    Attributes:
        mask: bool ``(n,)``, True = answers.
        residual: its decoding residual ``||a(mask)^T B − 1^T||_2^2``.
        weight_norm_sq: ``||a(mask)||_2^2``, the factor of the quantization variance.
        patterns: number of patterns compared.
    """

    mask: np.ndarray
    residual: float
    weight_norm_sq: float
    patterns: int


def adversarial_mask(code: GradientCode, stragglers: int | None = None) -> Adversary:
    """The pattern of exactly ``stragglers`` stragglers (default ``code.s``) that maximizes the
    decoding error of ``code`` under its own decoder ``a(mask)``.

    The decoded gradient is ``g = sum_i a_i Q(y_i)``; its error has two parts (see
    ``docs/theory/gradient_coding.md``): the decoding residual ``(a^T B − 1^T) G`` (G the
    stacked partition gradients), zero for an exact code with at most ``s`` stragglers, and
    the quantization noise ``sum_i a_i (Q(y_i) − y_i)``, of variance ``sum_i a_i^2
    E||Q(y_i) − y_i||^2``. Worst case, independent of the gradients: the largest residual
    ``||a^T B − 1^T||_2^2`` (the worst-case error over partition gradients of unit norm in the
    Frobenius sense is its square root); when the code is exact for that many stragglers
    (``stragglers <= code.s``, FRC and CRC: every residual is 0 up to rounding) the largest
    ``||a||_2^2``. All ``C(n, stragglers)`` patterns are enumerated on the host, once, with
    the code's own decoder (in the precision the code was built in).

    Raises:
        ValueError: ``stragglers`` not in ``[0, n − 1]``, or more than
            :data:`ADVERSARIAL_MAX_PATTERNS` patterns.
        TypeError: ``code`` not a GradientCode.
    """
    if not isinstance(code, GradientCode):
        raise TypeError(f"code must be a GradientCode (see CODES), got {type(code).__name__}")
    n = code.n_workers
    r = code.s if stragglers is None else check_int("stragglers", stragglers, min_value=0)
    if r >= n:
        raise ValueError(f"stragglers must be in [0, n - 1] = [0, {n - 1}], got {r}")
    count = math.comb(n, r)
    if count > ADVERSARIAL_MAX_PATTERNS:
        raise ValueError(
            f"stragglers={r} of n={n} gives {count} patterns, more than "
            f"ADVERSARIAL_MAX_PATTERNS = {ADVERSARIAL_MAX_PATTERNS}; use fewer stragglers"
        )
    masks = exact_straggler_masks(n, r)
    a = decoding_vectors(code, masks).astype(np.float64)
    residual = np.sum((a @ code.B - 1.0) ** 2, axis=1)
    norm = np.sum(a**2, axis=1)
    exact = r <= code.s and code.s > 0
    best = int(np.argmax(norm if exact else residual))
    return Adversary(masks[best], float(residual[best]), float(norm[best]), count)


@PARTICIPATION.register("adversarial")
def adversarial_stragglers(code: GradientCode, stragglers: int | None = None) -> Participation:
    """The same worst-case pattern at every step (:func:`adversarial_mask`): the workers whose
    absence maximizes ``code``'s decoding error.

    Raises:
        ValueError, TypeError: as :func:`adversarial_mask`.
    """
    adv = adversarial_mask(code, stragglers)
    base = pattern_stragglers(adv.mask[None, :])
    strag = np.flatnonzero(~adv.mask).tolist()
    return base._replace(
        name=f"adversarial[{code.name},stragglers={strag}]",
        config={
            "participation": "adversarial",
            "code": dict(code.config),
            "stragglers": len(strag),
            "mask": adv.mask.astype(int).tolist(),
        },
    )
