"""The figures show each claim (dichotomy/plots.py, the claims' plots): checked on their artists, not by eye."""

import math

import numpy as np
import pytest

from dichotomy import plots
from dichotomy.cli.train import _overrides
from dichotomy.experiments import presets
from dichotomy.run.trajectory import Trajectory
from dichotomy.validation import fig4
from dichotomy.validation.claim import Results

STEPS = np.array([0, 1, 10, 100, 1000, 10_000])


def _trajectory(classification: bool) -> Trajectory:
    ones = np.ones(STEPS.size)
    metrics = {"train_loss": np.geomspace(0.7, 1e-3, STEPS.size), "test_loss": np.geomspace(0.7, 1e-2, STEPS.size),
               "param_norm": np.linspace(10, 3, STEPS.size)}
    if classification:
        metrics |= {"train_acc": ones, "test_acc": np.array([0.5, 0.5, 0.5, 0.6, 0.9, 1.0])}
    return Trajectory(STEPS, metrics, {"u": np.zeros(2)}, {})


def _outside(fig, ax) -> bool:
    """Whether the axes' legend lies entirely outside the axes (so it covers no curve)."""
    fig.canvas.draw()
    legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    return legend.x0 >= box.x1 or legend.y0 >= box.y1 or legend.x1 <= box.x0 or legend.y1 <= box.y0


@pytest.mark.parametrize("classification", [True, False])
def test_the_limits_are_reference_lines_and_legends_sit_beside_the_panels(classification):
    refs = {"kernel limit": 0.5 if classification else 0.1, "late limit": 1.0 if classification else 1e-3}
    fig = plots.trajectory_figure(_trajectory(classification), "t", references=refs)
    top = fig.axes[0]
    drawn = {line.get_label(): line.get_ydata()[0] for line in top.get_lines()}
    scale = 100 if classification else 1
    assert drawn["kernel limit"] == pytest.approx(scale * refs["kernel limit"])
    assert drawn["late limit"] == pytest.approx(scale * refs["late limit"])
    if not classification:
        assert top.get_yscale() == "log"  # a loss: no "0" tick below a symlog threshold
    for ax in fig.axes:
        if ax.get_legend() is not None:
            assert _outside(fig, ax)
    plots.pyplot().close(fig)


def test_fig4_draws_log_time_on_a_logarithmic_axis():
    log_time = np.log(np.array([1e-2, 1.0, 1e2, 1e5, 1e20, 1e300]))
    m = {"train_acc": np.ones(6), "test_acc": np.linspace(0.5, 1, 6), "param_norm": np.linspace(1, 3, 6),
         "log_time": np.append(log_time[:-1], 5000.0)}  # t = e^5000: beyond float64, still drawn
    fig = fig4.figure(Results({}, {}, {"run": Trajectory(np.arange(6), m, {}, {})}))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    x = ax.get_lines()[0].get_xdata()
    assert x[-1] == pytest.approx(5000 / math.log(10))
    assert _outside(fig, ax)
    plots.pyplot().close(fig)


def test_a_trained_runs_title_names_its_overrides():
    base = presets.get("fig1a-quick")
    assert _overrides(base, presets.override(base, alpha=0.5, steps=1000)) == " · alpha=0.5 · steps=1000"
    assert _overrides(base, base) == ""
