"""Matplotlib helpers that draw on a given ``Axes`` (the caller owns the figure and backend).

Rate–distortion plots show the normalized distortion in dB (``10 log10 D``) against bits per
coordinate and the Shannon bound ``D(R) = 2^(-2R)`` of the Gaussian source. Each compressor
gets its own colour family (variants of one compressor, e.g. lattices or scalar designs: shades
of it) and marker; filled markers are closed-form points, open markers Monte Carlo points with
±2 standard-error bars; the line of a compressor is its operational rate–distortion curve with
time sharing, the lower convex envelope of its points in the linear ``(R, D)`` plane
(:func:`lower_convex_envelope`), drawn in dB. The legend names the bit layer on the x axis
and describes only the kinds of artists actually drawn (:func:`legend_note`); points outside
the axes are listed on the figure (:func:`off_scale`).

The pure helpers (:func:`lower_convex_envelope`, :func:`assign_styles`,
:func:`choose_rate_max`, :func:`off_scale`, :func:`legend_note`) are shared by
``ratedist demo``, ``ratedist rd --plot`` and ``paper_figures/rd_gaussian.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import check_choice, check_positive


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


#: Colour families (Kelly's colours of maximum contrast, white and black left out; black is
#: the Shannon bound): one per compressor in a figure, in this order.
COLOR_FAMILIES: tuple[tuple[str, str], ...] = (
    ("strong blue", "#0067A5"),
    ("vivid orange", "#F38400"),
    ("vivid green", "#008856"),
    ("vivid red", "#BE0032"),
    ("strong purple", "#875692"),
    ("very light blue", "#A1CAF1"),
    ("medium gray", "#848482"),
    ("vivid yellow", "#F3C300"),
    ("strong purplish pink", "#E68FAC"),
    ("strong reddish brown", "#882D17"),
    ("vivid yellowish green", "#8DB600"),
    ("grayish yellow", "#C2B280"),
    ("strong yellowish pink", "#F99379"),
    ("strong purplish red", "#B3446C"),
    ("dark olive green", "#2B3D26"),
    ("deep yellowish brown", "#654522"),
    ("vivid reddish orange", "#E25822"),
    ("strong violet", "#604E97"),
)
#: Markers, one per compressor (its variants continue along the list from its own).
MARKERS = "osD^vP*Xph<>d8H"
#: Shades of a family for the variants of one compressor: mix with black (< 0) or white (> 0).
_SHADES = (0.0, -0.35, 0.4, -0.6, 0.65, -0.2, 0.25, -0.5)

#: Names of the bit layers in axis labels and legends.
_LAYER_LABEL = {
    "container": "container (bit-packed wire size)",
    "entropy": "entropy (ideal entropy-coded size)",
}
#: What :func:`legend_note` says for each kind of artist drawn (keys = artist gids).
_KIND_NOTE = {
    "envelope": "lines: lower convex envelope (time sharing, linear R–D)",
    "closed": "filled markers: closed form",
    "mc": "open markers: Monte Carlo ±2 SE",
}


class Style(NamedTuple):
    """Drawing style of one legend group: colour (hex), marker and colour family name."""

    color: str
    marker: str
    family: str


def _shade(hex_color: str, amount: float) -> str:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], np.float64)
    target = 255.0 if amount > 0 else 0.0
    mixed = rgb + abs(amount) * (target - rgb)
    return "#" + "".join(f"{round(float(v)):02X}" for v in mixed)


def assign_styles(labels: Iterable[str], compressor_of: Callable[[str], str]) -> dict[str, Style]:
    """Colour and marker of each legend group: one colour family and marker per compressor.

    Compressors (``compressor_of(label)``) take the families of :data:`COLOR_FAMILIES` and the
    markers of :data:`MARKERS` in order of decreasing number of groups, then name (the
    compressors with most variants get the strongest colours); the groups of one compressor (sorted) take
    shades of its family and the next markers. Up to ``len(COLOR_FAMILIES)`` compressors no
    two share a family; beyond that (compressors registered by the user) the families repeat
    with other shades and markers. No two groups share a (colour, marker) pair.
    """
    labels = sorted(set(labels))
    count: dict[str, int] = {}
    for lab in labels:
        count[compressor_of(lab)] = count.get(compressor_of(lab), 0) + 1
    names = sorted(count, key=lambda n: (-count[n], n))
    out: dict[str, Style] = {}
    for i, name in enumerate(names):
        lap, slot = divmod(i, len(COLOR_FAMILIES))
        family, base = COLOR_FAMILIES[slot]
        variants = [lab for lab in labels if compressor_of(lab) == name]
        for j, lab in enumerate(variants):
            color = _shade(base, _SHADES[(j + lap) % len(_SHADES)])
            out[lab] = Style(color, MARKERS[(i + j) % len(MARKERS)], family)
    return out


def lower_convex_envelope(rates: Any, distortions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the operational RD curve with time sharing through the given points.

    Time sharing between two operating points achieves every convex combination of their
    ``(R, D)``, and spending more rate never has to cost distortion, so the achievable set is
    ``conv(points) + [0, inf)^2``; its lower boundary, returned here, is the lower convex hull
    from the leftmost point (lowest D among the leftmost) to the point of least distortion
    (least rate among those): convex and non-increasing in the linear ``(R, D)`` plane.

    Args:
        rates, distortions: equal-length 1-D sequences (finite; at least one point).

    Returns:
        ``(r, d)`` arrays of the envelope vertices, ``r`` strictly increasing.

    Raises:
        ValueError: empty input, unequal lengths or non-finite values.
    """
    r = np.asarray(rates, np.float64).reshape(-1)
    d = np.asarray(distortions, np.float64).reshape(-1)
    if r.size == 0 or r.shape != d.shape:
        raise ValueError(
            f"rates and distortions must be non-empty and of equal length, got {r.size} and "
            f"{d.size}"
        )
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
        raise ValueError("rates and distortions must be finite")
    order = np.lexsort((d, r))
    hull: list[tuple[float, float]] = []
    for x, y in zip(r[order], d[order], strict=True):
        if hull and x == hull[-1][0]:
            continue  # same rate: the lower distortion came first
        if hull and y >= hull[-1][1]:
            continue  # more rate for no less distortion: dominated (free disposal)
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # pop the middle point unless it lies strictly below the chord
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append((float(x), float(y)))
    hr, hd = np.array(hull).T
    return hr, hd


def envelope_curve(r: Any, d: Any, per_segment: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Points along the piecewise-linear envelope (linear in D) for drawing it in dB."""
    r, d = np.asarray(r, np.float64), np.asarray(d, np.float64)
    if r.size == 1:
        return r, d
    t = np.linspace(0.0, 1.0, per_segment)[:-1]
    xs = [r[i] + t * (r[i + 1] - r[i]) for i in range(r.size - 1)] + [r[-1:]]
    ys = [d[i] + t * (d[i + 1] - d[i]) for i in range(d.size - 1)] + [d[-1:]]
    return np.concatenate(xs), np.concatenate(ys)


def choose_rate_max(rates: Iterable[float], cap: float | None = None) -> float:
    """x-axis limit: 5% above the largest rate, at least 1; at most ``cap`` when given."""
    top = max([1.0, *(float(x) for x in rates if x is not None and math.isfinite(x))]) * 1.05
    if cap is None:
        return top
    return min(top, check_positive("cap", cap))


def _rate(p: Any, layer: str, mc: bool) -> float | None:
    if layer == "container":
        return p.rate_bits_mc if mc and p.rate_bits_mc is not None else p.rate_bits
    if mc and p.entropy_rate_bits_mc is not None:
        return p.entropy_rate_bits_mc
    return p.entropy_rate_bits


def _coords(p: Any, layer: str) -> list[tuple[str, float | None, float | None]]:
    """``(kind, R, D)`` of a point's closed-form and Monte Carlo coordinates that exist."""
    out = []
    if p.distortion is not None and _rate(p, layer, False) is not None:
        out.append(("closed", _rate(p, layer, False), p.distortion))
    if p.distortion_mc is not None and _rate(p, layer, True) is not None:
        out.append(("mc", _rate(p, layer, True), p.distortion_mc))
    return out


#: Parameters that do not tell the points of a sweep apart (left out of point names).
_PLUMBING = ("float_bits", "rng_bits")


def point_name(point: Any, label: Callable[[Any], str] | None = None) -> str:
    """Short name of one point: its legend group and the swept parameters."""
    group = (label or default_label)(point)
    params = {
        k: v
        for k, v in (point.params or {}).items()
        if k not in _PLUMBING
        and not isinstance(v, list | dict)
        and k not in ("method", "lattice", "rounding", "normalize", "quantizer")
        and not (k == "dither" and v is False)
    }
    body = " ".join(f"{k}={v}" for k, v in params.items())
    return f"{group} {body}".strip()


def off_scale(
    points: Sequence[Any],
    *,
    layer: str,
    rate_max: float,
    db_range: tuple[float, float] | None = None,
    label: Callable[[Any], str] | None = None,
    max_per_group: int = 2,
) -> list[str]:
    """Points not visible on the axes, as ``"name (R=16.0)"`` or ``"name (R=32.0, D=0)"``.

    A point is off scale when none of its coordinates (closed form or Monte Carlo) lies in
    ``0 <= R <= rate_max`` with ``D > 0`` (and ``10 log10 D`` within ``db_range`` if given).
    A legend group with more than ``max_per_group`` hidden points is summarized as
    ``"group: n points (R=a–b)"``.
    """
    layer = check_choice("layer", layer, _LAYER_LABEL)
    hidden: dict[str, list[tuple[float, str]]] = {}
    for p in points:
        coords = _coords(p, layer)
        if not coords:
            continue
        visible = [
            (r, dd)
            for _, r, dd in coords
            if r <= rate_max
            and dd > 0
            and (db_range is None or db_range[0] <= float(to_db(dd)) <= db_range[1])
        ]
        if visible:
            continue
        _, r, dd = coords[0]
        where = f"R={r:.1f}" + (", D=0" if dd <= 0 else "")
        if dd > 0 and db_range is not None and not db_range[0] <= float(to_db(dd)) <= db_range[1]:
            where += f", {float(to_db(dd)):.0f} dB"
        group = (label or default_label)(p)
        hidden.setdefault(group, []).append((r, f"{point_name(p, label)} ({where})"))
    out = []
    for group, items in hidden.items():
        names = list(dict.fromkeys(n for _, n in items))
        if len(names) <= max_per_group:
            out += names
        else:
            rs = [r for r, _ in items]
            out.append(f"{group}: {len(names)} points (R={min(rs):.1f}–{max(rs):.1f})")
    return out


def off_scale_text(hidden: Sequence[str], width: int = 110, where: str = "") -> str:
    """``"off scale{where}: a (R=16.0); b (R=32.0, D=0)"``, wrapped at ``width`` characters."""
    import textwrap

    return textwrap.fill(f"off scale{where}: " + "; ".join(hidden), width=width)


def legend_note(layer: str, drawn: Iterable[str]) -> str:
    """Legend title: the bit layer, then one line per kind of artist actually drawn
    (``"envelope"``, ``"closed"``, ``"mc"``; others are ignored)."""
    layer = check_choice("layer", layer, _LAYER_LABEL)
    kinds = set(drawn)
    lines = [f"bits: {_LAYER_LABEL[layer]}"]
    lines += [note for kind, note in _KIND_NOTE.items() if kind in kinds]
    return "\n".join(lines)


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


class RDDrawing(NamedTuple):
    """What :func:`plot_rd` drew: the axes, legend handles/labels (one per compressor group,
    then the marker kinds and Shannon), the legend title and the off-scale list."""

    ax: Any
    handles: list[Any]
    labels: list[str]
    note: str
    off_scale: list[str]


def _draw_group(ax: Any, group: list[Any], layer: str, style: Style) -> set[str]:
    """Markers and envelope of one group; returns the kinds drawn."""
    kinds: set[str] = set()
    closed = [(r, dd) for p in group for k, r, dd in _coords(p, layer) if k == "closed" and dd > 0]
    mc = [
        (r, p.distortion_mc, p.distortion_mc_se or 0.0)
        for p in group
        for k, r, _ in _coords(p, layer)
        if k == "mc" and p.distortion_mc > 0
    ]
    # The envelope runs through the closed forms where the group has any, else the MC means.
    base = closed or [(r, dd) for r, dd, _ in mc]
    if len(base) >= 2:
        er, ed = envelope_curve(*lower_convex_envelope(*np.array(base).T))
        ax.plot(er, to_db(ed), "-", color=style.color, lw=1.4, zorder=3, gid="envelope")
        kinds.add("envelope")
    if closed:
        r, dd = np.array(closed).T
        ax.plot(
            r,
            to_db(dd),
            ls="none",
            marker=style.marker,
            ms=5,
            color=style.color,
            mec="black",
            mew=0.4,
            zorder=4,
            gid="closed",
        )
        kinds.add("closed")
    if mc:
        r, dd, se = np.array(sorted(mc)).T
        # ±2 SE in dB by the delta method: d(10 log10 D) = (10 / ln 10) dD / D.
        yerr = 10.0 / math.log(10.0) * 2.0 * se / dd
        container = ax.errorbar(
            r,
            to_db(dd),
            yerr=yerr,
            fmt=style.marker,
            ms=7,
            mfc="none",
            mew=1.3,
            color=style.color,
            ls="none",
            elinewidth=1.0,
            capsize=2,
            zorder=4,
        )
        container.lines[0].set_gid("mc")
        kinds.add("mc")
    return kinds


def plot_rd(
    ax: Any,
    points: Sequence[Any],
    *,
    layer: str = "container",
    shannon: bool = True,
    rate_max: float | None = None,
    rate_cap: float | None = None,
    db_range: tuple[float, float] | None = None,
    title: str | None = None,
    label: Callable[[Any], str] = default_label,
    legend: bool = True,
    legend_kw: dict[str, Any] | None = None,
    note_off_scale: bool = True,
) -> RDDrawing:
    """Draw operational points (:class:`ratedist.rd.operational.RDPoint`) on ``ax``.

    Per legend group (``label(point)``): filled markers at the closed-form points, open
    markers with ±2 SE bars at the Monte Carlo points, and the lower convex envelope
    (time sharing) of the closed-form points, or of the MC means where the group has no
    closed form. Colours and markers from :func:`assign_styles` (family per compressor).

    Args:
        ax: a matplotlib ``Axes``.
        points: RD points.
        layer: ``"container"`` (``rate_bits``) or ``"entropy"`` (``entropy_rate_bits``).
        shannon: also draw the Shannon bound.
        rate_max: x-axis limit in bits per coordinate (default :func:`choose_rate_max` of
            the rates shown, at most ``rate_cap``).
        rate_cap: upper bound of the automatic ``rate_max`` (e.g. 10 bits).
        db_range: y-axis limits in dB (default: the visible points, 3 dB margins).
        title: axes title.
        label: point -> group label (default :func:`default_label`).
        legend: draw the legend (its title names the bit layer and the artists drawn).
        legend_kw: extra keyword arguments for ``ax.legend``.
        note_off_scale: write the :func:`off_scale` list on the axes.

    Returns:
        :class:`RDDrawing`.

    Raises:
        ValueError: for an unknown layer or an empty ``points``.
    """
    layer = check_choice("layer", layer, _LAYER_LABEL)
    points = list(points)
    if not points:
        raise ValueError("points must contain at least one RD point, got none")
    groups = _group(points, label)
    styles = assign_styles(groups, lambda lab: groups[lab][0].compressor)
    rates = [r for p in points for _, r, dd in _coords(p, layer) if dd > 0]
    xmax = rate_max if rate_max is not None else choose_rate_max(rates, rate_cap)
    drawn: set[str] = set()
    handles, labels = [], []
    for name in sorted(groups):
        kinds = _draw_group(ax, groups[name], layer, styles[name])
        drawn |= kinds
        if kinds:
            st = styles[name]
            (h,) = ax.plot(
                [],
                [],
                color=st.color,
                marker=st.marker,
                ls="-" if "envelope" in kinds else "none",
                lw=1.4,
                ms=6,
            )
            handles.append(h)
            labels.append(name)
    gray = {"color": "0.35", "ls": "none", "ms": 6}
    if "closed" in drawn:
        handles.append(ax.plot([], [], marker="o", **gray)[0])
        labels.append("closed form (filled)")
    if "mc" in drawn:
        handles.append(ax.plot([], [], marker="o", mfc="none", **gray)[0])
        labels.append("Monte Carlo ±2 SE (open)")
    if shannon:
        handles.append(plot_shannon(ax, xmax, gid="shannon"))
        labels.append("Shannon D(R)")
    visible_db = [
        float(to_db(dd))
        for p in points
        for _, r, dd in _coords(p, layer)
        if dd > 0 and r <= xmax and math.isfinite(float(to_db(dd)))
    ]
    if db_range is None and visible_db:
        db_range = (min(visible_db) - 3.0, max(visible_db) + 3.0)
    if db_range is not None:
        ax.set_ylim(*db_range)
    ax.set_xlim(0.0, xmax)
    ax.set_xlabel(f"rate R (bits per coordinate, {layer} layer)")
    ax.set_ylabel(r"distortion $10\log_{10} D$ (dB), $D = E\|g-\hat g\|^2/(d\sigma^2)$")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    hidden = off_scale(points, layer=layer, rate_max=xmax, db_range=db_range, label=label)
    if note_off_scale and hidden:
        ax.text(
            0.99,
            0.99,
            off_scale_text(hidden),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="small",
            color="0.25",
            wrap=True,
            gid="off-scale",
        )
    note = legend_note(layer, drawn)
    if legend:
        kw = {"fontsize": "small", "title": note}
        kw.update(legend_kw or {})
        leg = ax.legend(handles, labels, **kw)
        leg.get_title().set_fontsize("small")
    return RDDrawing(ax, handles, labels, note, hidden)


def rd_figure(
    points: Sequence[Any],
    *,
    layers: Sequence[str] = ("container",),
    rate_cap: float | None = None,
    db_range: tuple[float, float] | None = None,
    title: str | None = None,
    label: Callable[[Any], str] = default_label,
    panel_size: tuple[float, float] = (6.5, 5.5),
) -> Any:
    """A bare ``matplotlib.figure.Figure`` (no pyplot, no backend chosen) with one
    :func:`plot_rd` panel per bit layer, a shared y range and one legend outside on the right.

    The figure of ``ratedist demo``, ``ratedist rd --plot`` and
    ``paper_figures/rd_gaussian.py``. The legend title (:func:`legend_note`) names the layer
    (or says it is on each x axis) and only the kinds of artists drawn in some panel.
    """
    from matplotlib.figure import Figure

    layers = [check_choice("layer", layer, _LAYER_LABEL) for layer in layers]
    if not layers:
        raise ValueError("layers must name at least one bit layer, got none")
    fig = Figure(figsize=(panel_size[0] * len(layers) + 3.0, panel_size[1]), layout="constrained")
    axes = fig.subplots(1, len(layers), sharey=True, squeeze=False)[0]
    drawings = [
        plot_rd(
            ax,
            points,
            layer=layer,
            rate_cap=rate_cap,
            db_range=db_range,
            label=label,
            legend=False,
            title=f"{layer} layer" if len(layers) > 1 else None,
            note_off_scale=False,
        )
        for ax, layer in zip(axes, layers, strict=True)
    ]
    if db_range is None:
        lows, highs = zip(*(d.ax.get_ylim() for d in drawings), strict=True)
        axes[0].set_ylim(min(lows), max(highs))
    for ax in axes[1:]:
        ax.set_ylabel("")
    handles, labels = [], []
    for d in drawings:
        for h, lab in zip(d.handles, d.labels, strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    kinds = {k for d in drawings for k in _KIND_NOTE if _KIND_NOTE[k] in d.note}
    if len(layers) == 1:
        note = drawings[0].note
    else:
        lines = [n for k, n in _KIND_NOTE.items() if k in kinds]
        note = "\n".join(["bits: layer on each x axis", *lines])
    leg = fig.legend(handles, labels, loc="outside right center", fontsize="small", title=note)
    leg.get_title().set_fontsize("small")
    # One line (wrapped) per panel with hidden points, under the panels only: the legend
    # column on the right (about 3 inches) is left free.
    width = int(12 * (fig.get_figwidth() - 3.0))
    notes = [
        off_scale_text(d.off_scale, width, where=f" ({layer} layer)" if len(layers) > 1 else "")
        for d, layer in zip(drawings, layers, strict=True)
        if d.off_scale
    ]
    if notes:
        text = fig.supxlabel("\n".join(notes), fontsize="small", color="0.25", ha="left", x=0.0)
        text.set_gid("off-scale")
    if title:
        fig.suptitle(title)
    return fig


__all__ = [
    "COLOR_FAMILIES",
    "MARKERS",
    "RDDrawing",
    "Style",
    "assign_styles",
    "choose_rate_max",
    "default_label",
    "envelope_curve",
    "legend_note",
    "lower_convex_envelope",
    "off_scale",
    "off_scale_text",
    "plot_rd",
    "plot_shannon",
    "point_name",
    "rd_figure",
    "to_db",
]
