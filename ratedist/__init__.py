"""ratedist: rate–distortion analysis of gradient compression in distributed SGD.

The always-needed names are re-exported here and the subpackages (:mod:`ratedist.rd`,
:mod:`ratedist.sim`, :mod:`ratedist.bounds`, :mod:`ratedist.validate`,
:mod:`ratedist.symbolic`, :mod:`ratedist.plotting`, :mod:`ratedist.gradients`) and the
optax adapter (:mod:`ratedist.optax`) are attributes; all of them load on first access, so
``import ratedist`` itself loads neither JAX nor scipy::

    import ratedist as rd
    sol = rd.design("lloyd-max", rd.Gaussian(), bits=3)
    comp = rd.make_compressor("top-k:k=10")
    trace = rd.sim.run(...)
    tx = optax.chain(rd.optax.compress(comp, key=key), optax.adam(1e-3))
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# Every name below loads on first access (PEP 562), for import time only: the compressors,
# sources, quantizers and the optax adapter import JAX (about 2-4 s here), which `import ratedist`,
# `ratedist --help` and the command line's argument errors should not wait for; ``rd``
# loads scipy.stats and the closed forms, the others sympy, matplotlib, the simulator and
# optax (``gradients``, which reads scikit-learn's data only when a model is trained).
# They hide no import cycle: every subpackage imports its dependencies at module level, and
# tests/test_imports.py checks the graph.
_LAZY_MODULES = ("compressors", "optax", "quantizers", "sources")
_LAZY_SUBPACKAGES = ("rd", "sim", "bounds", "validate", "symbolic", "plotting", "gradients")
#: exported name -> (module, attribute in it)
_LAZY_ATTRS: dict[str, tuple[str, str]] = {
    **{
        name: ("ratedist.compressors", name)
        for name in ("COMPRESSORS", "CompressInfo", "Compressor", "error_feedback")
    },
    "make_compressor": ("ratedist.compressors", "make"),
    **{
        name: ("ratedist.infotheory", name)
        for name in ("gap_to_shannon", "gaussian_distortion", "gaussian_rate")
    },
    **{
        name: ("ratedist.quantizers", name)
        for name in (
            "DESIGNS",
            "ScalarQuantizer",
            "Solution",
            "design",
            "evaluate",
            "lloyd_max",
            "optimal_truncation",
            "tnq",
            "tuq",
        )
    },
    **{
        name: ("ratedist.sources", name)
        for name in (
            "Empirical",
            "Gaussian",
            "GeneralizedGaussian",
            "Laplace",
            "PdfSource",
            "PowerLaw",
            "StudentT",
            "make_source",
        )
    },
    "rd_point": ("ratedist.rd", "rd_point"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES or name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"ratedist.{name}")
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # the next access is a plain lookup
        return value
    raise AttributeError(f"module 'ratedist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


#: Every public name, read from the tables above (one place).
__all__ = sorted(["__version__", *_LAZY_MODULES, *_LAZY_SUBPACKAGES, *_LAZY_ATTRS])
