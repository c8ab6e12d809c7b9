"""The diagnosis of the switch: which limit a trajectory is at, and when it switches (docs/limits.md §7).

Along a run recorded with a probe set (``Trajectory.outputs``), :func:`diagnose` measures at every recorded
step the distance from the network's outputs to the kernel predictor (K1/K2 at theta_bar) and to the
late-phase predictor (:mod:`dichotomy.refimpl.limits.predictors`), predicts the switch at
t* = ln(alpha) / lambda, and measures it on a test metric (:func:`measured_switch`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np

from dichotomy.errors import ConfigError, DichotomyError
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.limits import kkt
from dichotomy.refimpl.limits.predictors import Predictor, distance, kernel_limit, late_limit, predicted_time
from dichotomy.run.trajectory import Trajectory
from dichotomy.store import files

__all__ = ["Diagnosis", "Switch", "diagnose", "fit_step", "measured_switch"]

SLACK = 1e-9  # a move within this relative distance of min_change counts as min_change (decimal accuracies)


@dataclass(frozen=True)
class Switch:
    """A switch measured on one test metric: its plateau, final value, 10/50/90% steps and width.

    The plateau is the median over the decade after the training set is fit. The 10%, 50% and 90% steps are the first
    steps at which the metric has gone that far of the way (linear interpolation between recorded steps); ``width`` =
    step_90 - step_10.
    """

    metric: str
    plateau: float
    final: float
    step_10: float
    step_50: float
    step_90: float

    @property
    def width(self) -> float:
        return self.step_90 - self.step_10


def fit_step(traj: Trajectory) -> int:
    """The first recorded step at which the training set is fit, or the last step if never.

    Fit means 100% train accuracy (classification), or the train loss below 1e-3 of its initial value (regression).
    """
    m = traj.metrics
    done = m["train_acc"] >= 1.0 if "train_acc" in m else m["train_loss"] <= 1e-3 * m["train_loss"][0]
    return int(traj.steps[np.argmax(done)] if done.any() else traj.steps[-1])


def _crossing(steps, values, start, level, direction) -> float:
    hits = np.flatnonzero(direction * (values[start:] - level) >= 0)
    if hits.size == 0:
        return math.nan
    k = start + hits[0]
    if k == 0 or values[k] == values[k - 1]:
        return float(steps[k])
    frac = (level - values[k - 1]) / (values[k] - values[k - 1])
    return float(steps[k - 1] + frac * (steps[k] - steps[k - 1]))


def measured_switch(traj: Trajectory, metric: str | None = None, *, min_change: float = 0.1,
                        ) -> Switch | None:
    """The switch of ``metric``, or None if it moves by less than ``min_change`` from plateau to end of run.

    ``metric`` defaults to test_acc, or test_loss for regression. A move of at least ``min_change`` counts (to
    rounding: within 1e-9 of it, so 0.5 -> 0.6 is a move of 0.1): absolute for accuracies (0.1 = ten points),
    and for losses relative to the larger of |plateau| and |final| (a loss falling from 0.2 to 0.1 moved by 0.5).
    """
    metric = metric or ("test_acc" if "test_acc" in traj.metrics else "test_loss")
    if metric not in traj.metrics:
        raise ConfigError(f"the trajectory has no metric {metric!r}; it has {', '.join(traj.metrics)}")
    steps, values = traj.steps, traj.metrics[metric]
    s0 = max(fit_step(traj), 1)
    window = (steps >= s0) & (steps <= 10 * s0)
    plateau = float(np.median(values[window])) if window.any() else float(values[0])
    final = float(values[-1])
    scale = 1.0 if metric.endswith("acc") else max(abs(plateau), abs(final))
    if abs(final - plateau) < min_change * scale * (1 - SLACK):
        return None
    start = int(np.argmax(steps >= s0))
    direction = 1.0 if final > plateau else -1.0
    at = [_crossing(steps, values, start, plateau + q * (final - plateau), direction) for q in (0.1, 0.5, 0.9)]
    return Switch(metric, plateau, final, *at)


@dataclass(frozen=True)
class Diagnosis:
    """Distances to both limits at every recorded step, and the predicted and measured switch."""

    steps: np.ndarray
    kernel: Predictor
    late: Predictor
    kernel_distance: np.ndarray
    late_distance: np.ndarray
    predicted: dict
    measured: Switch | None
    kkt: dict | None

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = []
        for p, dist in ((self.kernel, self.kernel_distance), (self.late, self.late_distance)):
            if p.outputs is None:
                lines.append(f"  {p.name}: not computed ({p.reason})")
            elif not np.any(np.isfinite(dist)):
                lines.append(f"  distance to {p.name}: undefined at every recorded step (the outputs on the probe "
                             "set are 0 or not finite, so they have no direction)")
            else:
                lines.append(f"  distance to {p.name}: min {np.nanmin(dist):.3g} at step "
                             f"{self.steps[np.nanargmin(dist)]}, final {dist[-1]:.3g}")
        pred = self.predicted
        if math.isfinite(pred["time"]):
            lines.append(f"  predicted switch t* = ln(alpha)/lambda = {pred['time']:.4g} (time), "
                         f"{pred['steps']:.4g} steps [alpha = {pred['alpha']:g}: {pred['convention']}]")
        else:
            lines.append(f"  predicted switch t* = ln(alpha)/lambda: {pred.get('note') or 'undefined'} "
                         f"[alpha: {pred['convention']}]")
        if self.measured is None:
            lines.append("  measured switch: none in this run (the test metric did not move)")
        else:
            t = self.measured
            lines.append(f"  measured switch of {t.metric} ({t.plateau:.4g} -> {t.final:.4g}): midpoint at step "
                         f"{t.step_50:.4g}, width (10%-90%) {t.width:.4g} steps")
        if self.kkt and self.kkt.get("reason"):
            lines.append(f"  KKT residual at the final parameters: not computed ({self.kkt['reason']})")
        elif self.kkt:
            lines.append(f"  KKT residual of {self.kkt['problem']} at the final parameters: stationarity "
                         f"{self.kkt['stationarity']:.3g}, slackness {self.kkt['slackness']:.3g}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """Everything as JSON-serializable values.

        Arrays become lists and NaN and infinities null; the predicted switch's ``note`` says why it is not a number.
        """
        def clean(a):
            return files.json_ready(np.asarray(a, dtype=float))
        predictors = {key: {"name": p.name, "info": p.info, "reason": p.reason}
                      for key, p in (("kernel", self.kernel), ("late", self.late))}
        return {"steps": self.steps.tolist(), "kernel_distance": clean(self.kernel_distance),
                "late_distance": clean(self.late_distance), "predictors": files.json_ready(predictors),
                "predicted": files.json_ready(self.predicted),
                "measured": None if self.measured is None else files.json_ready(asdict(self.measured)),
                "kkt": files.json_ready(self.kkt)}


def diagnose(traj: Trajectory, module: ModuleType, config, params0, data: Dataset, probe, *, lr: float,
             wd: float, metric: str | None = None) -> Diagnosis:
    """The dichotomy diagnostic of a trajectory recorded with ``probe`` (see :func:`default_probe`)."""
    if traj.outputs is None or len(traj.outputs) != len(traj.steps):
        raise ConfigError("the trajectory has no probe outputs: train with probe=default_probe(data)")
    predicted = predicted_time(module, config, lr, wd)  # first: it checks lr and wd before the solvers run
    kernel = kernel_limit(module, config, params0, data, probe)
    late = late_limit(module, config, data, probe)
    nan = np.full(len(traj.steps), np.nan)
    dists = [nan if p.outputs is None else distance(traj.outputs, p.outputs, data.task) for p in (kernel, late)]
    try:
        r = kkt.kkt_residual(module, config, traj.params, data.X_train, data.y_train, data.loss)
        residual = {"problem": r.problem, "stationarity": r.stationarity, "slackness": r.slackness,
                    "constraints": r.constraints}
    except DichotomyError as e:
        residual = {"problem": "R1/R2", "stationarity": math.nan, "slackness": math.nan, "reason": str(e)}
    return Diagnosis(traj.steps, kernel, late, dists[0], dists[1], predicted,
                     measured_switch(traj, metric), residual)
