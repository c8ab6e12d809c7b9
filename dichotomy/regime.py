"""Is a GD run in the gradient-flow regime? lr x sharpness at its ends, and along it when recorded (docs/math.md §7.4).

The theorems are about the gradient flow; GD follows it while lr x sharpness stays well below 2
(:mod:`dichotomy.refimpl.sharpness`). :func:`gd_regime` measures it at the initialization and at the end of a run
(and takes the largest recorded value when the run recorded ``sharpness``); a run at or above :data:`EDGE` is
flagged as outside the gradient-flow regime by ``dichotomy train`` and in ``dichotomy validate``'s report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np

from dichotomy.errors import DichotomyError
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.sharpness import sharpness
from dichotomy.run.trajectory import Trajectory

EDGE = 2.0


@dataclass(frozen=True)
class Regime:
    """lr x sharpness of one GD run: at step 0, at its last step and (if recorded) the largest along it."""

    lr: float
    sharpness_init: float
    sharpness_final: float
    sharpness_max_recorded: float | None = None
    step_max_recorded: int | None = None

    @property
    def largest(self) -> float:
        values = [self.sharpness_init, self.sharpness_final, self.sharpness_max_recorded or -math.inf]
        return self.lr * max(v for v in values if math.isfinite(v))

    @property
    def in_flow_regime(self) -> bool:
        return self.largest < EDGE

    def summary(self) -> str:
        """One or two lines: lr x sharpness at both ends (and its largest recorded), and the verdict."""
        line = (f"lr x sharpness {self.lr * self.sharpness_init:.3g} at step 0, "
                f"{self.lr * self.sharpness_final:.3g} at the end")
        if self.sharpness_max_recorded is not None:
            line += f", at most {self.lr * self.sharpness_max_recorded:.3g} (step {self.step_max_recorded})"
        if self.in_flow_regime:
            return line + ": below 2, GD follows the gradient flow"
        return (line + f": at or above {EDGE:g}, GD is outside the gradient-flow regime there (it oscillates or "
                "catapults where the flow does not go, and the theorems' predictions may not apply); a smaller lr, "
                "or --flow, follows the flow, and dichotomy gd-flow measures how far GD strays")

    def to_json(self) -> dict:
        return {**asdict(self), "largest_lr_sharpness": self.largest, "in_flow_regime": self.in_flow_regime}


def gd_regime(module: ModuleType, config, params0: dict, traj: Trajectory, data: Dataset, *, lr: float,
              wd: float) -> Regime:
    """The :class:`Regime` of the GD run ``traj`` (its final parameters, and its ``sharpness`` metric if recorded)."""
    s0 = sharpness(module, config, params0, data.X_train, data.y_train, data.loss, wd)
    s1 = sharpness(module, config, traj.params, data.X_train, data.y_train, data.loss, wd)
    recorded = traj.metrics.get("sharpness")
    if recorded is not None and len(recorded) and np.any(np.isfinite(recorded)):
        i = int(np.nanargmax(recorded))
        return Regime(lr, s0, s1, float(recorded[i]), int(traj.steps[i]))
    return Regime(lr, s0, s1)


def sharpness_watch(module: ModuleType, data: Dataset, wd: float) -> dict:
    """``watch`` for :func:`dichotomy.run.driver.run`: record the sharpness at every recorded step (any backend).

    Where it cannot be measured (parameters or products not finite, Lanczos not converging) it records NaN and the
    run goes on.
    """
    def measure(config, params) -> float:
        try:
            return sharpness(module, config, params, data.X_train, data.y_train, data.loss, wd)
        except DichotomyError:
            return math.nan

    return {"sharpness": measure}
