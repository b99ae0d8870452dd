"""Plotting helpers draw the expected artists on a given Axes (Agg backend)."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ratedist.compressors import parse_spec
from ratedist.plotting import (
    _KIND_NOTE,
    COLOR_FAMILIES,
    assign_styles,
    choose_rate_max,
    default_label,
    legend_note,
    lower_convex_envelope,
    off_scale,
    plot_rd,
    plot_shannon,
    rd_figure,
    to_db,
)
from ratedist.rd import RDPoint, default_specs


def _pt(name, rate, dist, mc=None, se=None, **params):
    return RDPoint(
        compressor=name,
        params=params,
        rate_bits=rate,
        entropy_rate_bits=rate * 0.9,
        distortion=dist,
        distortion_mc=mc,
        distortion_mc_se=se,
        shannon_distortion=2.0 ** (-2 * rate),
        gap_db=None,
        gap_bits=None,
        rate_bits_mc=rate if mc is not None else None,
        entropy_rate_bits_mc=rate * 0.9 if mc is not None else None,
    )


POINTS = [
    _pt("top-k", 0.5, 0.9, k=10),
    _pt("top-k", 2.0, 0.7, 0.71, 0.01, k=50),
    _pt("scaled-sign", 1.03, 0.36, 0.365, 0.002),
    _pt("qsgd", 4.0, None, 5.3, 0.05, s=4),  # Monte Carlo only
    _pt("scalar", 2.0, 0.12, method="lloyd-max"),
]


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _gid_lines(ax, gid):
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def test_plot_rd_draws_envelopes_markers_shannon_and_layer_legend(ax):
    drawing = plot_rd(ax, POINTS, layer="container")
    # The closed-form Top-K envelope runs from (0.5, 0.9) to (2.0, 0.7) linearly in D.
    assert "top-k" in drawing.labels and "scalar lloyd-max" in drawing.labels
    assert "qsgd" in drawing.labels  # Monte Carlo-only compressors still get an entry
    envelopes = _gid_lines(ax, "envelope")
    (topk,) = [e for e in envelopes if e.get_xdata()[0] == 0.5]
    x, y = topk.get_xdata(), 10 ** (np.asarray(topk.get_ydata()) / 10)
    np.testing.assert_allclose(y, 0.9 + (x - 0.5) / 1.5 * (0.7 - 0.9), rtol=1e-12)
    (sh,) = _gid_lines(ax, "shannon")
    x, y = sh.get_xdata(), sh.get_ydata()
    assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(-20 * math.log10(2), rel=1e-12)
    legend = ax.get_legend()
    assert "container" in legend.get_title().get_text()
    assert "container layer" in ax.get_xlabel() and "dB" in ax.get_ylabel()
    assert len(ax.containers) == 3  # one errorbar container per group with MC points


def test_plot_rd_entropy_layer_uses_entropy_rates(ax):
    drawing = plot_rd(ax, POINTS, layer="entropy", shannon=False, rate_max=5.0)
    closed = [line.get_xdata().tolist() for line in _gid_lines(ax, "closed")]
    assert [0.45, 1.8] in closed  # Top-K's closed-form markers at 0.9 x its rates
    assert "entropy" in drawing.note and "Shannon D(R)" not in drawing.labels
    assert ax.get_xlim() == (0.0, 5.0)


def test_helpers_and_bad_inputs(ax):
    assert to_db([1.0, 0.1]).tolist() == pytest.approx([0.0, -10.0])
    assert default_label(POINTS[-1]) == "scalar lloyd-max"
    line = plot_shannon(ax, 3.0)
    assert line.get_xdata()[-1] == 3.0
    with pytest.raises(ValueError, match="layer"):
        plot_rd(ax, POINTS, layer="wire")
    with pytest.raises(ValueError, match="points"):
        plot_rd(ax, [])
    with pytest.raises(ValueError, match="rate_max"):
        plot_shannon(ax, -1.0)


def _brute_envelope(r, d, x):
    """min over single points with r_i <= x (more rate is free) and over chords of two points
    bracketing x: the time-sharing RD function at x, by exhaustion."""
    best = min(dd for rr, dd in zip(r, d, strict=True) if rr <= x)
    for i in range(len(r)):
        for j in range(len(r)):
            if r[i] <= x <= r[j] and r[j] > r[i]:
                t = (x - r[i]) / (r[j] - r[i])
                best = min(best, d[i] + t * (d[j] - d[i]))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_envelope_is_convex_non_increasing_and_below_every_point(seed):
    rng = np.random.default_rng(seed)
    r = rng.uniform(0, 8, 12)
    d = np.exp(-rng.uniform(0, 3, 12)) * rng.uniform(0.5, 1.5, 12)
    er, ed = lower_convex_envelope(r, d)
    assert np.all(np.diff(er) > 0) and np.all(np.diff(ed) < 0)
    slopes = np.diff(ed) / np.diff(er)
    assert np.all(np.diff(slopes) > 0)  # strictly convex vertices
    # Vertices are points, and the envelope equals the exhaustive time-sharing minimum.
    assert all(any(np.isclose(x, r) & np.isclose(y, d)) for x, y in zip(er, ed, strict=True))
    for x in np.linspace(er[0], er[-1], 41):
        assert np.interp(x, er, ed) == pytest.approx(_brute_envelope(r, d, x), abs=1e-12)
    # Every point lies on or above it (beyond the last vertex: above its distortion).
    for x, y in zip(r, d, strict=True):
        assert y >= np.interp(x, er, ed) - 1e-12


def test_envelope_drops_vertical_and_horizontal_parameter_order_segments():
    # NUQSGD s = 3, 6, 8 (closed forms at d = 1000): R 3.03 -> 4.03 drops 14.7 dB; the
    # parameter-order line was a near-vertical segment, the envelope is the convex chord.
    er, ed = lower_convex_envelope([3.032, 4.032, 5.032], [5.30941, 0.17894, 0.08347])
    assert er.tolist() == [3.032, 4.032, 5.032]
    # A flat tail (more rate, same distortion) is dominated: no horizontal segment.
    er, ed = lower_convex_envelope([1.0, 2.0, 8.0], [0.5, 0.2, 0.2])
    assert er.tolist() == [1.0, 2.0] and ed.tolist() == [0.5, 0.2]
    # And a point above the chord of its neighbours is not a vertex.
    er, _ = lower_convex_envelope([1.0, 2.0, 3.0], [0.5, 0.45, 0.1])
    assert er.tolist() == [1.0, 3.0]


def _demo_labels():
    labels = {}
    for spec in (s for group in default_specs().values() for s in group):
        name, params = parse_spec(spec)
        p = POINTS[0]._replace(compressor=name, params=params)
        labels[default_label(p)] = name
    return labels


def test_styles_unique_across_the_demo_compressors():
    labels = _demo_labels()
    styles = assign_styles(labels, labels.__getitem__)
    assert set(styles) == set(labels)
    pairs = [(s.color, s.marker) for s in styles.values()]
    assert len(set(pairs)) == len(pairs)
    assert len({s.color for s in styles.values()}) == len(styles)
    # No two compressors in one colour family; variants of one compressor share theirs.
    family_of = {}
    for lab, st in styles.items():
        assert family_of.setdefault(labels[lab], st.family) == st.family
    assert len(set(family_of.values())) == len(family_of)
    # The base colours of the families used differ visibly: CIE76 colour difference >= 25
    # (sRGB -> CIELAB, D65; 2.3 is a just-noticeable difference).
    used = [c for f, c in COLOR_FAMILIES if f in set(family_of.values())]
    lab = _cielab(used)
    dist = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    assert dist[np.triu_indices(len(used), 1)].min() >= 25


def _cielab(hexes):
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in hexes], float) / 255
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=-1
    )


def test_off_scale_lists_exactly_the_points_outside_the_axes():
    pts = [
        _pt("perm-k", 16.0, None, 0.99, 0.01, n_workers=2),
        _pt("perm-k", 8.0, None, 2.96, 0.04, n_workers=4),
        _pt("identity", 32.0, 0.0, 0.0, 0.0, float_bits=32),
        _pt("top-k", 0.42, 0.92, k=10),
    ]
    assert choose_rate_max([16.0, 8.0, 32.0, 0.42], 10.0) == 10.0
    assert choose_rate_max([2.0, 0.5]) == pytest.approx(2.1)
    hidden = off_scale(pts, layer="container", rate_max=10.0)
    assert hidden == ["perm-k n_workers=2 (R=16.0)", "identity (R=32.0, D=0)"]
    fig, ax = plt.subplots()
    try:
        drawing = plot_rd(ax, pts, rate_cap=10.0)
        assert ax.get_xlim() == (0.0, 10.0) and drawing.off_scale == hidden
        (text,) = [t for t in ax.texts if t.get_gid() == "off-scale"]
        assert "perm-k n_workers=2 (R=16.0)" in text.get_text()
    finally:
        plt.close(fig)


def _drawn_kinds(ax):
    return {k for k in _KIND_NOTE if _gid_lines(ax, k)}


@pytest.mark.parametrize("which", ["closed", "mc", "both", "single"])
def test_rd_plot_legend_describes_only_the_artists_drawn(which):
    # What `ratedist rd --plot` draws (rd_figure): trials = 0 gives closed forms only, a
    # compressor without closed form Monte Carlo only.
    pts = {
        "closed": [p._replace(distortion_mc=None) for p in POINTS if p.distortion is not None],
        "mc": [p._replace(distortion=None) for p in POINTS if p.distortion_mc is not None],
        "both": POINTS,
        "single": [POINTS[2]],
    }[which]
    fig = rd_figure(pts)
    (ax,) = fig.axes
    title = fig.legends[0].get_title().get_text()
    drawn = _drawn_kinds(ax)
    for kind, note in _KIND_NOTE.items():
        assert (note in title) == (kind in drawn), (kind, title, drawn)
    assert title == legend_note("container", drawn)
    assert ("Monte Carlo ±2 SE (open)" in [t.get_text() for t in fig.legends[0].get_texts()]) == (
        "mc" in drawn
    )
    if which == "closed":
        assert drawn == {"envelope", "closed"}
    if which == "single":
        assert "envelope" not in drawn  # one point per group: no line, and none announced


def test_styles_stay_unique_beyond_the_colour_families():
    # user-registered compressors beyond the palette: families repeat, (colour, marker) pairs do not
    names = [f"c{i:02d}" for i in range(len(COLOR_FAMILIES) + 4)]
    labels = {f"{n} v{j}": n for n in names for j in range(2)}
    styles = assign_styles(labels, labels.__getitem__)
    pairs = {(s.color, s.marker) for s in styles.values()}
    assert len(pairs) == len(labels)
