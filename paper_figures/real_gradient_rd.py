"""RD figure on real gradients: every compressor on captured mlp-digits gradients vs Gaussian theory.

Captures the minibatch gradients of ``mlp-digits`` (16 minibatches of 32, Adam 1e-3, seed 0)
at step 100 into a temporary directory, and applies every registered compressor at its RD
sweep (``ratedist.rd.default_specs``; ``perm-k`` left out, as in rd_gaussian.py: its
randomness is shared across workers and one vector says nothing about it) to each minibatch
gradient of the two weight layers (``dense1/w``, d = 4096, and ``dense2/w``, d = 640: 98.5 %
of the 4810 parameters; the biases, d = 64 and 10, are left out because the sparse sweeps use
k up to 200).

*Normalised per layer*: each layer's 16 gradients are divided by the layer's RMS (over all
16), so each layer has unit mean square, as in ``ratedist gradients design``; distortion is
``sum ||g - g_hat||^2 / sum ||g||^2`` over both layers, rate the total bits over the total
coordinates (side information included). Exact zeros are kept: a compressor must send them.

* open markers (the plotting helper's "Monte Carlo" kind): measured on the real gradients,
  ±2 SE over the 16 minibatches;
* filled markers: the Gaussian theory of the same compressor (closed form at each layer's d,
  pooled the same way); lattices have no closed-form container rate and ``grid`` and
  ``stochastic-sign`` no closed form: they are drawn from the real gradients only;
* lines: lower convex envelope of the theory points, or of the measured points where a
  compressor has no theory;
* black curve: Shannon's Gaussian ``D(R) = 2^(-2R)``. For the real gradients, which are
  not Gaussian, it is not a lower bound: a non-Gaussian law of the same variance has a
  smaller ``D(R)``, so points below it are possible and do not contradict Shannon.

Run:  python paper_figures/real_gradient_rd.py   (writes paper_figures/real_gradient_rd.{png,pdf})
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ratedist.compressors import COMPRESSORS
from ratedist.gradients import capture_gradients, load_capture
from ratedist.plotting import rd_figure
from ratedist.rd import RDPoint, closed_form, default_specs
from ratedist.rd.operational import as_compressor

jax.config.update("jax_enable_x64", True)

MODEL = "mlp-digits"
STEP = 100
LAYERS = ("dense1/w", "dense2/w")
SEED = 0
OUT = Path(__file__).with_suffix("")


def measure(spec: str, grads: dict[str, np.ndarray], key) -> tuple[np.ndarray, ...]:
    """Per-minibatch ``(squared error, energy, container bits, entropy bits, coordinates)``
    summed over the layers."""
    comp = as_compressor(spec)

    def one(x, k):
        x_hat, _, info = comp.update(x, comp.init(x), key=k)
        err = x - x_hat
        return jnp.sum(err * err), jnp.sum(x * x), info.container_bits, info.entropy_bits

    f = jax.jit(jax.vmap(one))
    tot = None
    for i, layer in enumerate(LAYERS):
        g = grads[layer]
        keys = jax.random.split(jax.random.fold_in(key, i), g.shape[0])
        e, n, cb, eb = (np.asarray(v, np.float64) for v in f(jnp.asarray(g), keys))
        part = np.stack([e, n, cb, eb, np.full_like(e, g.shape[1])])
        tot = part if tot is None else tot + part
    return tuple(tot)


def gaussian_theory(spec: str, dims: list[int]) -> tuple[float | None, float | None, float | None]:
    """Closed-form ``(rate, entropy rate, distortion)`` pooled over layers of sizes ``dims``."""
    cfs = [closed_form(spec, d) for d in dims]
    if any(c is None for c in cfs):
        return None, None, None
    w = np.array(dims, float) / sum(dims)
    dist = float(sum(wi * c.distortion for wi, c in zip(w, cfs, strict=True)))
    rate = None
    if all(c.rate_bits is not None for c in cfs):
        rate = float(sum(wi * c.rate_bits for wi, c in zip(w, cfs, strict=True)))
    ent = None
    if all(c.entropy_rate_bits is not None for c in cfs):
        ent = float(sum(wi * c.entropy_rate_bits for wi, c in zip(w, cfs, strict=True)))
    return rate, ent, dist


#: The plotting helper's legend words for its two kinds of points, and what they are here.
RELABEL = {
    "filled markers: closed form": "filled markers: Gaussian theory (closed form)",
    "open markers: Monte Carlo ±2 SE": "open markers: real gradients ±2 SE",
    "closed form (filled)": "Gaussian theory (filled)",
    "Monte Carlo ±2 SE (open)": "real gradients ±2 SE (open)",
    "Shannon D(R)": "Shannon D(R) of a Gaussian\n(not a bound for real data)",
    "lines: lower convex envelope (time sharing, linear R–D)": "lines: lower convex envelope "
    "(time sharing)\nof the theory, else of the\nmeasured points (grid, stochastic-sign)",
}


def relabel(fig) -> None:
    """Say what the markers are here: Gaussian theory vs measurements on real gradients."""
    for leg in fig.legends:
        title = leg.get_title()
        text = title.get_text()
        for old, new in RELABEL.items():
            text = text.replace(old, new)
        title.set_text(text)
        for t in leg.get_texts():
            t.set_text(RELABEL.get(t.get_text(), t.get_text()))


def main() -> int:
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        capture_gradients(
            MODEL, [STEP], Path(tmp) / "cap", minibatches=16, batch_size=32, seed=SEED
        )
        cap = load_capture(Path(tmp) / "cap")
        grads = {}
        for layer in LAYERS:
            g = np.asarray(cap.steps[STEP].minibatch[layer], np.float64)
            g = g.reshape(g.shape[0], -1)
            grads[layer] = g / np.sqrt(np.mean(g * g))
    dims = [grads[layer].shape[1] for layer in LAYERS]
    key = jax.random.key(SEED)
    points = []
    specs = [
        s
        for name, ss in default_specs().items()
        if not COMPRESSORS.facts(name).get("shared")
        for s in ss
    ]
    for i, spec in enumerate(specs):
        e, n, cb, eb, coords = measure(spec, grads, jax.random.fold_in(key, i))
        dist_j = e / n  # per minibatch, pooled over the layers
        rate_mc = float(np.sum(cb) / np.sum(coords))
        ent_mc = float(np.sum(eb) / np.sum(coords))
        rate, ent, dist = gaussian_theory(spec, dims)
        comp = as_compressor(spec)
        points.append(
            RDPoint(
                compressor=comp.facts.name,
                params=dict(comp.facts.params),
                rate_bits=rate if rate is not None else rate_mc,
                entropy_rate_bits=ent,
                distortion=dist if rate is not None else None,
                distortion_mc=float(np.sum(e) / np.sum(n)),
                distortion_mc_se=float(np.std(dist_j, ddof=1) / np.sqrt(dist_j.size)),
                shannon_distortion=float(2.0 ** (-2 * (rate if rate is not None else rate_mc))),
                gap_db=None,
                gap_bits=None,
                rate_bits_mc=rate_mc,
                entropy_rate_bits_mc=ent_mc,
                d=sum(dims),
                trials=int(dist_j.size),
            )
        )
        gauss = "-" if not dist else f"{10 * np.log10(dist):7.2f}"
        print(
            f"  {spec:36s} rate {rate_mc:7.3f} (entropy {ent_mc:6.3f})  real "
            f"{10 * np.log10(max(points[-1].distortion_mc, 1e-300)):7.2f} dB  gaussian {gauss} dB"
        )
    t_compute = time.time() - t0
    fig = rd_figure(
        points,
        layers=("container", "entropy"),
        rate_cap=8.5,
        title=f"Compressors on real gradients: {MODEL} step {STEP}, weight layers normalised "
        "per layer (d = 4096 + 640, 16 minibatch gradients)\nopen markers: measured on the "
        "real gradients; filled markers: Gaussian theory at the same d; side information "
        "included",
    )
    relabel(fig)
    for ext in ("png", "pdf"):
        fig.savefig(OUT.with_suffix(f".{ext}"), dpi=130)
    print(f"{len(points)} points, computed in {t_compute:.1f} s, total {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
