"""The paper's figure, point by point: numbers read off a figure against the measured curve (docs/paper.md §3).

A reading is ``(metric, step, value, atol, rtol)``: the paper's curve passes through ``value`` at ``step``. The
run reproduces it when its own curve comes within ``atol + rtol |value|`` of ``value`` somewhere in the window
[step / (1 + s), step (1 + s)], s = ``step_rtol``: a reading off a log-scale axis is uncertain in the step by
~10%, and the data the paper drew (its RNG) differ from ours, which moves a switch by a similar amount. Both
tolerances are part of the claim's config, fixed before the run.
"""

from __future__ import annotations

import math

import numpy as np

from dichotomy.run.trajectory import Trajectory
from dichotomy.validation.claim import Check

__all__ = ["checks", "table"]


def _window(traj: Trajectory, metric: str, step: float, step_rtol: float) -> tuple[float, float, float]:
    """(value at the recorded step nearest ``step``, min and max over the window); NaNs when nothing is there."""
    steps, values = traj.steps.astype(np.float64), traj.metrics.get(metric)
    if values is None or not len(steps):
        return math.nan, math.nan, math.nan
    lo, hi = step / (1 + step_rtol), step * (1 + step_rtol)
    inside = (steps >= lo) & (steps <= hi) & np.isfinite(values)
    nearest = float(values[int(np.argmin(np.abs(steps - step)))])
    if not inside.any():
        return nearest, math.nan, math.nan
    return nearest, float(values[inside].min()), float(values[inside].max())


def checks(traj: Trajectory, readings: list[dict], step_rtol: float, figure: str) -> list[Check]:
    """One :class:`Check` per reading.

    Each passes when the measured curve reaches the paper's value (within its tolerance) inside the step window.
    """
    out = []
    for r in readings:
        value, atol, rtol = float(r["value"]), float(r.get("atol", 0.0)), float(r.get("rtol", 0.0))
        step = float(r["step"])
        nearest, low, high = _window(traj, r["metric"], step, step_rtol)
        tol = atol + rtol * abs(value)
        ok = math.isfinite(low) and low - tol <= value <= high + tol
        text = " ".join(t for t in (f"±{atol:g}" if atol else "", f"±{100 * rtol:g}%" if rtol else "") if t)
        out.append(Check(f"{figure}: {r['metric']} at step {step:.3g}",
                         f"{figure} reading: {r['metric']} = {value:g} at step {step:.3g}", value, nearest,
                         f"{text} somewhere in steps ×/÷ {1 + step_rtol:g}", bool(ok)))
    return out


def table(checks_: list[Check]) -> str:
    """The "paper reading vs measured" table (markdown) of the reading checks."""
    lines = ["| reading | paper | measured (nearest recorded step) | tolerance | verdict |", "|---|---|---|---|---|"]
    for c in checks_:
        lines.append(f"| {c.name} | {c.predicted:.4g} | {c.measured:.4g} | {c.tolerance} | "
                     f"{'pass' if c.passed else '**FAIL**'} |")
    return "\n".join(lines) + "\n"
