"""Plotting helpers draw the expected artists on a given Axes (Agg backend)."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ratedist.plotting import default_label, plot_rd, plot_shannon, to_db
from ratedist.rd import RDPoint


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


def test_plot_rd_draws_curves_points_shannon_and_layer_legend(ax):
    plot_rd(ax, POINTS, layer="container")
    labels = [line.get_label() for line in ax.get_lines()]
    assert "Shannon D(R)" in labels
    assert "top-k" in labels and "scalar lloyd-max" in labels
    # The closed-form Top-K line goes through both points, in dB.
    (topk,) = [line for line in ax.get_lines() if line.get_label() == "top-k"]
    np.testing.assert_allclose(topk.get_xdata(), [0.5, 2.0])
    np.testing.assert_allclose(topk.get_ydata(), 10 * np.log10([0.9, 0.7]))
    # Shannon line has the -6.02 dB per bit slope.
    (sh,) = [line for line in ax.get_lines() if line.get_label() == "Shannon D(R)"]
    x, y = sh.get_xdata(), sh.get_ydata()
    assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(-20 * math.log10(2), rel=1e-12)
    legend = ax.get_legend()
    assert "container" in legend.get_title().get_text()
    texts = [t.get_text() for t in legend.get_texts()]
    assert "qsgd" in texts  # Monte Carlo-only compressors still get a legend entry
    assert "container layer" in ax.get_xlabel() and "dB" in ax.get_ylabel()
    assert len(ax.containers) == 3  # one errorbar container per compressor with MC points


def test_plot_rd_entropy_layer_uses_entropy_rates(ax):
    plot_rd(ax, POINTS, layer="entropy", shannon=False, rate_max=5.0)
    (topk,) = [line for line in ax.get_lines() if line.get_label() == "top-k"]
    np.testing.assert_allclose(topk.get_xdata(), [0.45, 1.8])
    assert "entropy" in ax.get_legend().get_title().get_text()
    assert "Shannon D(R)" not in [line.get_label() for line in ax.get_lines()]
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
