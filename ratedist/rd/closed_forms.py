"""Closed-form (rate, distortion) of gradient compressors on i.i.d. Gaussian gradients.

Model (arXiv 2108.09899, Sec. 2 of the project SPEC): ``g in R^d`` with i.i.d.
``N(0, sigma^2)`` coordinates; distortion ``D = E||g - g_hat||^2 / (d sigma^2)``; rate in bits
per coordinate including side information, with the bit conventions of
:mod:`ratedist.compressors` (container = bit-packed wire size, entropy = ideal entropy-coded
size). Every function here returns a :class:`ClosedForm` and is registered in
:data:`CLOSED_FORMS` under the compressor's registry name, with the same parameters.

The closed forms are grouped by family, each registering itself against its compressor's
registry name (:func:`~ratedist.rd.closed_form_base.register_closed_form`):

* :mod:`ratedist.rd.closed_forms_dense`: identity, sign, scaled sign, QSGD, NUQSGD,
  TernGrad, natural compression, designed scalar quantizers;
* :mod:`ratedist.rd.closed_forms_sparse`: Top-K, Top-K + scaled sign, Rand-K (biased and
  unbiased), threshold;
* :mod:`ratedist.rd.lattice`: entropy-coded lattice quantizers (high-rate theory).

This module gathers them, so that importing it fills :data:`CLOSED_FORMS`, and re-exports
their public names. Each family module documents its derivations.

References:
    V. Gandikota, D. Kane, R. K. Maity, A. Mazumdar, "vqSGD: Vector Quantized Stochastic
    Gradient Descent", arXiv 2108.09899 (rate–distortion of gradient compressors).
"""

from ratedist.rd.closed_form_base import (
    CLOSED_FORMS,
    ClosedForm,
    expected_empirical_binary_entropy_bits,
    log2_binom,
    register_closed_form,
)
from ratedist.rd.closed_forms_dense import (
    identity_rd,
    natural_rd,
    norm_levels_moments,
    nuqsgd_rd,
    qsgd_rd,
    scalar_rd,
    scaled_sign_distortion,
    scaled_sign_rd,
    sign_rd,
    terngrad_distortion,
    terngrad_rd,
)
from ratedist.rd.closed_forms_sparse import (
    rand_k_rd,
    rand_k_unbiased_rd,
    threshold_distortion,
    threshold_kept_fraction,
    threshold_rd,
    top_k_distortion,
    top_k_distortion_binomial,
    top_k_distortion_large_d,
    top_k_rd,
    top_k_sign_distortion,
    top_k_sign_distortion_large_d,
    top_k_sign_rd,
    top_k_threshold,
)
from ratedist.rd.lattice import lattice_rd

__all__ = [
    "CLOSED_FORMS",
    "ClosedForm",
    "expected_empirical_binary_entropy_bits",
    "identity_rd",
    "lattice_rd",
    "log2_binom",
    "natural_rd",
    "norm_levels_moments",
    "nuqsgd_rd",
    "qsgd_rd",
    "rand_k_rd",
    "rand_k_unbiased_rd",
    "register_closed_form",
    "scalar_rd",
    "scaled_sign_distortion",
    "scaled_sign_rd",
    "sign_rd",
    "terngrad_distortion",
    "terngrad_rd",
    "threshold_distortion",
    "threshold_kept_fraction",
    "threshold_rd",
    "top_k_distortion",
    "top_k_distortion_binomial",
    "top_k_distortion_large_d",
    "top_k_rd",
    "top_k_sign_distortion",
    "top_k_sign_distortion_large_d",
    "top_k_sign_rd",
    "top_k_threshold",
]
