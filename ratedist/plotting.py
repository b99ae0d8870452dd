"""Matplotlib helpers that draw on a given ``Axes`` (the caller owns the figure and backend).

Rate–distortion plots show the normalized distortion in dB (``10 log10 D``) against bits per
coordinate, the Shannon bound ``D(R) = 2^(-2R)`` of the Gaussian source, closed-form points
of each compressor joined by lines with small filled markers (one line per compressor, in
the order the points are given, i.e. the order of the parameter sweep) and Monte Carlo points as open markers with ±2 standard-error bars. The legend title says which bit layer
(container or entropy) is on the x axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np

from ratedist._validation import check_choice, check_positive

_LAYER_LABEL = {
    "container": "container (bit-packed wire size)",
    "entropy": "entropy (ideal entropy-coded size)",
}


def to_db(distortion: Any) -> np.ndarray:
    """``10 log10 D`` (``-inf`` for D = 0)."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.asarray(distortion, np.float64))


def plot_shannon(
    ax: Any, rate_max: float, *, variance: float = 1.0, label: str = "Shannon D(R)", **kw: Any
) -> Any:
    """Draw the Gaussian ``D(R) = sigma^2 2^(-2R)`` (normalized by sigma^2, in dB) on ``ax``."""
    rate_max = check_positive("rate_max", rate_max)
    check_positive("variance", variance)
    r = np.linspace(0.0, rate_max, 256)
    style = {"color": "black", "lw": 2.0, "ls": "-", "zorder": 5}
    style.update(kw)
    (line,) = ax.plot(r, -20.0 * math.log10(2.0) * r, label=label, **style)
    return line


def _rate(p: Any, layer: str, mc: bool) -> float | None:
    if layer == "container":
        return p.rate_bits_mc if mc and p.rate_bits_mc is not None else p.rate_bits
    if mc and p.entropy_rate_bits_mc is not None:
        return p.entropy_rate_bits_mc
    return p.entropy_rate_bits


def default_label(point: Any) -> str:
    """Legend label of a point: the compressor name, plus the design method of ``scalar``
    points and the lattice name of ``lattice`` points (so different designs get own lines)."""
    params = point.params or {}
    if "method" in params:
        return f"{point.compressor} {params['method']}"
    if point.compressor == "lattice" and "lattice" in params:
        return f"lattice {params['lattice']}"
    return point.compressor


def _group(points: Iterable[Any], label: Callable[[Any], str]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for p in points:
        groups.setdefault(label(p), []).append(p)
    return groups


def plot_rd(
    ax: Any,
    points: Sequence[Any],
    *,
    layer: str = "container",
    shannon: bool = True,
    rate_max: float | None = None,
    title: str | None = None,
    colors: dict[str, Any] | None = None,
    label: Callable[[Any], str] = default_label,
    legend: bool = True,
    legend_kw: dict[str, Any] | None = None,
) -> Any:
    """Draw operational points (:class:`ratedist.rd.operational.RDPoint`) on ``ax``.

    Args:
        ax: a matplotlib ``Axes``.
        points: RD points; grouped by ``label(point)``, one colour and marker per group.
        layer: ``"container"`` (``rate_bits``) or ``"entropy"`` (``entropy_rate_bits``).
        shannon: also draw the Shannon bound.
        rate_max: x-axis limit in bits per coordinate (default: the largest rate shown, at
            least 1).
        title: axes title.
        colors: optional group label -> colour.
        label: point -> group label (default :func:`default_label`).
        legend: draw the legend (its title names the bit layer).
        legend_kw: extra keyword arguments for ``ax.legend``.

    Returns:
        ``ax``.

    Raises:
        ValueError: for an unknown layer or an empty ``points``.
    """
    layer = check_choice("layer", layer, _LAYER_LABEL)
    points = list(points)
    if not points:
        raise ValueError("points must contain at least one RD point, got none")
    groups = _group(points, label)
    if len(groups) <= 10:
        cycle = [c["color"] for c in mpl.rcParams["axes.prop_cycle"]]
    else:
        # tab20 pairs dark and light shades of one hue: take all dark shades first so that
        # neighbouring groups get different hues.
        cmap = mpl.colormaps["tab20"]
        cycle = [cmap(i) for i in range(0, 20, 2)] + [cmap(i) for i in range(1, 20, 2)]
    markers = "osD^v<>ph*XP"
    rates_seen: list[float] = []
    for i, (name, group) in enumerate(sorted(groups.items())):
        color = (colors or {}).get(name, cycle[i % len(cycle)])
        marker = markers[i % len(markers)]
        closed = [
            (_rate(p, layer, False), p.distortion)
            for p in group
            if p.distortion is not None and p.distortion > 0 and _rate(p, layer, False) is not None
        ]
        labelled = False
        if closed:
            r, dd = np.array(closed).T
            ax.plot(
                r, to_db(dd), "-", marker=marker, ms=3.5, color=color, lw=1.4, label=name, zorder=3
            )
            labelled = True
            rates_seen.extend(r.tolist())
        mc = [
            (_rate(p, layer, True), p.distortion_mc, p.distortion_mc_se or 0.0)
            for p in group
            if p.distortion_mc is not None
            and p.distortion_mc > 0
            and _rate(p, layer, True) is not None
        ]
        if mc:
            r, dd, se = np.array(sorted(mc)).T
            # ±2 SE in dB by the delta method: d(10 log10 D) = (10 / ln 10) dD / D.
            yerr = 10.0 / math.log(10.0) * 2.0 * se / dd
            ax.errorbar(
                r,
                to_db(dd),
                yerr=yerr,
                fmt=marker,
                ms=5,
                mfc="none",
                color=color,
                ls="--" if not closed else "none",
                lw=1.0,
                capsize=2,
                label=None if labelled else name,
                zorder=4,
            )
            rates_seen.extend(r.tolist())
    xmax = rate_max if rate_max is not None else max([1.0, *rates_seen]) * 1.05
    if shannon:
        plot_shannon(ax, xmax)
    ax.set_xlim(0.0, xmax)
    ax.set_xlabel(f"rate R (bits per coordinate, {layer} layer)")
    ax.set_ylabel(r"distortion $10\log_{10} D$ (dB), $D = E\|g-\hat g\|^2/(d\sigma^2)$")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend:
        kw = {
            "fontsize": "small",
            "title": f"bits: {_LAYER_LABEL[layer]}\nlines: closed form; open markers: "
            "Monte Carlo ±2 SE",
        }
        kw.update(legend_kw or {})
        leg = ax.legend(**kw)
        leg.get_title().set_fontsize("small")
    return ax


__all__ = ["default_label", "plot_rd", "plot_shannon", "to_db"]
