"""Figures in the style of the paper: metrics and parameter norm against step on a symlog axis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from refimpl.trajectory import Trajectory  # noqa: E402

_TRAIN, _TEST, _NORM = "tab:blue", "tab:red", "tab:gray"


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


def _distance_panel(ax, diagnosis):
    """Distances to the two limits on a log axis, with the predicted and measured switch marked."""
    for predictor, dist, color in ((diagnosis.kernel, diagnosis.kernel_distance, "tab:purple"),
                                   (diagnosis.late, diagnosis.late_distance, "tab:green")):
        if predictor.outputs is not None:
            ax.plot(diagnosis.steps, dist, color=color, label=f"to {predictor.name}")
    t_pred = diagnosis.predicted["steps"]
    if np.isfinite(t_pred) and t_pred <= diagnosis.steps[-1]:
        ax.axvline(t_pred, color="k", ls=":", label="t* = ln α / λ")
    if diagnosis.measured is not None and np.isfinite(diagnosis.measured.step_50):
        ax.axvline(diagnosis.measured.step_50, color="k", ls="--", lw=0.8, label="measured switch")
    ax.set_yscale("log")
    ax.set_ylabel("distance on probe set")
    ax.legend(loc="lower left", fontsize="small")


def plot_trajectory(traj: Trajectory, path: str | Path, title: str = "", diagnosis=None) -> Path:
    """Write a PNG: accuracy (top) and loss with parameter norm (bottom) as in the paper's Figs. 1 and 3.

    For regression, the top panel is omitted and the loss is drawn on a log axis. With a
    :class:`refimpl.limits.transition.Diagnosis`, a last panel shows the distances to the kernel and
    late-phase predictors crossing.
    """
    classification = "test_acc" in traj.metrics
    panels = (2 if classification else 1) + (diagnosis is not None)
    fig, axes = plt.subplots(panels, 1, figsize=(7, 1.0 + 2.75 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    if classification:
        acc = axes[0]
        acc.plot(traj.steps, 100 * traj.metrics["train_acc"], color=_TRAIN, label="train")
        acc.plot(traj.steps, 100 * traj.metrics["test_acc"], color=_TEST, label="test")
        acc.set_ylabel("accuracy (%)")
        acc.set_ylim(-2, 102)
        acc.legend(loc="center left")
        _step_axis(acc, label=False)
    loss = axes[1 if classification else 0]
    loss.plot(traj.steps, traj.metrics["train_loss"], color=_TRAIN, label="train loss")
    loss.plot(traj.steps, traj.metrics["test_loss"], color=_TEST, label="test loss")
    loss.set_ylabel("loss")
    if not classification:
        loss.set_yscale("symlog", linthresh=1e-4)
    _step_axis(loss, label=diagnosis is None)
    if diagnosis is not None:
        _distance_panel(axes[-1], diagnosis)
        _step_axis(axes[-1])
    twin = _norm_twin(loss, traj)
    lines = loss.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    loss.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper right")
    if traj.status != "completed":
        title = f"{title} ({traj.status} at step {traj.steps[-1] if len(traj) else 0})"
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
