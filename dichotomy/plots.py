"""Figures in the style of the paper: metrics and parameter norm against step on a symlog axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dichotomy.run.trajectory import Trajectory
from dichotomy.store import files

_TRAIN, _TEST, _NORM = "tab:blue", "tab:red", "tab:gray"
_REFERENCE_STYLES = ({"color": "tab:purple", "ls": "--"}, {"color": "tab:green", "ls": "-."})  # kernel, late


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (a command that draws nothing never pays it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _step_axis(ax, label=True):
    ax.set_xscale("symlog", linthresh=1.0)
    if label:
        ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)


def _norm_twin(ax, traj: Trajectory):
    twin = ax.twinx()
    twin.plot(traj.steps, traj.metrics["param_norm"], color=_NORM, ls="--", label="||θ||₂")
    twin.set_ylabel("parameter norm ||θ||₂", color=_NORM)
    return twin


def _distance_panel(ax, steps, curves: dict, marks: dict):
    """Distances to the limits on a log axis, with vertical lines at ``marks``.

    ``curves`` maps label -> array aligned with ``steps``; ``marks`` maps label -> step.
    """
    colors = iter(("tab:purple", "tab:green", "tab:orange", "tab:brown"))
    for label, dist in curves.items():
        ax.plot(steps, dist, color=next(colors), label=label)
    for (label, step), style in zip(marks.items(), ((":", 1.2), ("--", 0.8), ("-.", 0.8)), strict=False):
        if np.isfinite(step) and step <= steps[-1]:
            ax.axvline(step, color="k", ls=style[0], lw=style[1], label=label)
    ax.set_yscale("log")
    ax.set_ylabel("distance on probe set")
    _legend_outside(ax)


def diagnosis_curves(diagnosis) -> tuple[dict, dict]:
    """The distance curves and switch marks of a :class:`dichotomy.diagnosis.Diagnosis`."""
    curves = {f"to {p.name}": d for p, d in ((diagnosis.kernel, diagnosis.kernel_distance),
                                             (diagnosis.late, diagnosis.late_distance)) if p.outputs is not None}
    marks = {"t* = ln α / λ": diagnosis.predicted["steps"]}
    if diagnosis.measured is not None:
        marks["measured switch"] = diagnosis.measured.step_50
    return curves, marks


def plot_trajectory(traj: Trajectory, path: str | Path, title: str = "", diagnosis=None, **options) -> Path:
    """Write :func:`trajectory_figure` as a PNG at ``path``; return the path."""
    fig = trajectory_figure(traj, title, diagnosis, **options)
    try:
        return files.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    finally:
        pyplot().close(fig)


def _legend_outside(ax, handles=None, labels=None) -> None:
    """The legend in a band above the axes, never over a curve (nor over a twin axis's ticks on the right)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.0, 1.02, 1.0, 0.2), mode="expand", ncol=2,
              borderaxespad=0.0, fontsize="small", frameon=False)


def trajectory_figure(traj: Trajectory, title: str = "", diagnosis=None, *, curves: dict | None = None,
                      marks: dict | None = None, norm_prediction=None, references: dict | None = None):
    """Accuracy (top) and loss with parameter norm (bottom) against step, as in the paper's Figs. 1 and 3.

    For regression, the top panel is omitted and the loss is drawn on a log axis. With a
    :class:`dichotomy.diagnosis.Diagnosis`, a last panel shows the distances to the kernel and
    late-phase predictors crossing; ``curves`` and ``marks`` (see :func:`_distance_panel`) give that panel
    directly. ``norm_prediction`` (array aligned with ``traj.steps``) is drawn beside the measured norm.
    ``references`` ({label: value}) draws the limits' own test accuracy (classification; values in [0, 1]) or
    test loss (regression) as dashed lines, so "the plateau is the kernel predictor" reads off the figure.
    Legends sit beside the panels.
    """
    if diagnosis is not None:
        curves, marks = diagnosis_curves(diagnosis)
    classification = "test_acc" in traj.metrics
    panels = (2 if classification else 1) + (curves is not None)
    plt = pyplot()
    fig, axes = plt.subplots(panels, 1, figsize=(7.5, 1.0 + 3.3 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    if classification:
        acc = axes[0]
        acc.plot(traj.steps, 100 * traj.metrics["train_acc"], color=_TRAIN, label="train")
        acc.plot(traj.steps, 100 * traj.metrics["test_acc"], color=_TEST, label="test")
        acc.set_ylabel("accuracy (%)")
        acc.set_ylim(-2, 102)
        for (label, value), style in zip((references or {}).items(), _REFERENCE_STYLES, strict=False):
            acc.axhline(100 * value, lw=1, label=label, **style)
        _legend_outside(acc)
        _step_axis(acc, label=False)
    loss = axes[1 if classification else 0]
    loss.plot(traj.steps, traj.metrics["train_loss"], color=_TRAIN, label="train loss")
    loss.plot(traj.steps, traj.metrics["test_loss"], color=_TEST, label="test loss")
    loss.set_ylabel("loss")
    if not classification:
        loss.set_yscale("log")  # a loss is > 0; symlog drew a "0" tick below its linear threshold
        drawn = np.concatenate([traj.metrics["train_loss"], traj.metrics["test_loss"]])
        floor = np.min(drawn[drawn > 0], initial=np.inf) / 100
        for (label, value), style in zip((references or {}).items(), _REFERENCE_STYLES, strict=False):
            if value >= floor:
                loss.axhline(value, lw=1, label=label, **style)
            else:  # far below every curve: named in the legend, not drawn (it would squash them)
                loss.plot([], [], lw=1, label=f"{label} {value:.1g} (below)", **style)
    _step_axis(loss, label=curves is None)
    if curves is not None:
        _distance_panel(axes[-1], traj.steps, curves, marks or {})
        _step_axis(axes[-1])
    twin = _norm_twin(loss, traj)
    if norm_prediction is not None:
        twin.plot(traj.steps, norm_prediction, color="k", ls=":", lw=1, label="||θ₀||·(1−ηλ)^step")
    lines = loss.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    _legend_outside(loss, lines[0] + extra[0], lines[1] + extra[1])
    if traj.status != "completed":
        title = f"{title} ({traj.status} at step {traj.steps[-1] if len(traj) else 0})"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save(fig, out: Path, title: str, dpi: int = 120, **title_style) -> list[Path]:
    """Title, lay out and write ``fig`` as ``out/figure.png`` (a claim's figure); close it."""
    fig.suptitle(title, **title_style)
    fig.tight_layout()
    try:
        return [files.atomic_write(Path(out) / "figure.png",
                                   lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))]
    finally:
        pyplot().close(fig)
