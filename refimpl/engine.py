"""The engine protocol, and the NumPy reference written as an engine (docs/architecture.md).

An **engine** holds B >= 1 runs of one model on one dataset. Runs may differ in their config (depth, alpha,
...), initial parameters, learning rate and weight decay; they share the data. The one driver
(:func:`dichotomy.run.driver.drive`) owns everything around the math: the record schedule, progress, divergence
bookkeeping, signals and the Trajectory. Every backend (``numpy`` here, ``numba`` and ``cupy`` in
``dichotomy.kernels``) implements :class:`Engine`; a single run is B = 1, never a separate code path.

The update rule is the package's one rule, p <- p - lr (g + wd p) (:mod:`dichotomy.refimpl.steppers`), or, with
:class:`LossNormalized`, GD without weight decay at the learning rate eta / L(theta). The gradient flow
(:class:`Flow`) has engines of its own, with ``continuous = True`` (:mod:`dichotomy.refimpl.flow_engine`): an
engine class offers them through ``flow_engine()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

import numpy as np

from dichotomy.refimpl import losses, metrics
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.steppers import LossNormalized, sgd_step

SPLITS = ("train", "test", "probe")


@dataclass(frozen=True)
class RunSpec:
    """One run of a batch: its model config, initial parameters (float64, validated), lr and wd."""

    config: object
    params: dict
    lr: float
    wd: float


class Engine(Protocol):
    """What every backend's engine offers the driver. Arrays cross the protocol as float64 NumPy arrays.

    Construction: ``EngineClass(model, runs, data, *, probe=None, dtype="float64", schedule=None)`` with ``runs`` a
    list of :class:`RunSpec` (validated by the driver) and ``probe`` extra inputs whose outputs are recorded.
    A class may define ``unsupported(model, runs, data, dtype, schedule) -> str | None`` (a classmethod): the
    reason it cannot take this combination, which the driver turns into a one-line error before building it.
    """

    B: int                    # number of runs
    step: int                 # updates applied so far to the runs still going
    diverged_at: np.ndarray   # (B,) int64: -1 while a run goes on, else its first step with a non-finite loss

    def advance(self, steps: int) -> None:
        """Apply ``steps`` fused updates to every run still going.

        A run whose loss L(theta_s) is not finite is frozen at theta_s and ``diverged_at[b] = s``; the others go
        on. ``step`` grows by ``steps``.
        """

    def metrics(self) -> list[dict[str, float]]:
        """Per run, the metrics of :func:`dichotomy.run.driver.evaluate` at the current parameters."""

    def outputs(self, split: str) -> list[np.ndarray]:
        """Per run, the outputs on ``split`` ("train", "test" or "probe"): (n,) or (n, out), float64."""

    def params(self) -> list[dict[str, np.ndarray]]:
        """Per run, the current parameters as float64 copies, named and shaped like the PyTorch code's."""

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue bit for bit: parameters in the working dtype, step, divergence."""

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a :meth:`state` of an engine built with the same model, runs, data and dtype."""


def hot_copy(X: np.ndarray) -> np.ndarray:
    """A float64 copy of exact small-integer inputs (+-1 data) read every step; index pairs stay integer."""
    if X.dtype.kind == "i" and X.dtype.itemsize == 1 and X.size <= 1 << 25:
        return X.astype(np.float64)
    return X


def evaluate(model: ModuleType, config, params, data: Dataset, f_train: np.ndarray, train_loss: float,
             X_test=None) -> dict[str, float]:
    """Every metric at one recorded step, given the train outputs and loss already computed.

    ``train_loss``, ``train_log_loss`` (log L in log space), ``test_loss``, ``param_norm`` = ||theta||_2, and for
    classification ``train_acc``, ``test_acc`` and ``margin`` = min_i margin_i / ||theta||^L.
    The state is the engine's, checked once by the driver, so the outputs come from the unchecked ``forward``.
    """
    f_test = model.forward(config, params, data.X_test if X_test is None else X_test)[0]
    out = metrics.evaluate(np, data.task, data.loss, model.degree(config), f_train, data.y_train, f_test,
                           data.y_test, params.values())
    return {**out, "train_loss": train_loss}


class ReferenceEngine:
    """The float64 oracle as an engine: the model module's forward/backward and one GD step at a time, per run.

    Nothing is fused or reordered, so this is the definition every other engine is compared with.
    """

    name = "numpy"

    @classmethod
    def unsupported(cls, model, runs, data, dtype, schedule) -> str | None:
        return None if dtype == "float64" else f"the numpy reference computes in float64 only, not {dtype}"

    @classmethod
    def flow_engine(cls):
        """The engine class of this backend's gradient flow (:mod:`refimpl.flow_engine`)."""
        from dichotomy.refimpl.flow_engine import ReferenceFlowEngine

        return ReferenceFlowEngine

    def __init__(self, model: ModuleType, runs: list[RunSpec], data: Dataset, *, probe=None, dtype="float64",
                 schedule: LossNormalized | None = None):
        self.model, self.runs, self.data, self.schedule = model, runs, data, schedule
        self.B, self.step = len(runs), 0
        self.diverged_at = np.full(self.B, -1, np.int64)
        self.X = {"train": hot_copy(data.X_train), "test": data.X_test, "probe": probe}
        self.theta = [{k: v.copy() for k, v in r.params.items()} for r in runs]
        self.log_time = np.full(self.B, -math.inf)

    def advance(self, steps: int) -> None:
        # Overflow is detected explicitly (a non-finite loss), so NumPy's warnings would only be noise.
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            for b in np.flatnonzero(self.diverged_at < 0):
                for s in range(self.step, self.step + steps):
                    if not self._step(b, s):
                        self.diverged_at[b] = s
                        break
        self.step += steps

    def _step(self, b: int, s: int) -> bool:
        """Update s + 1 of run b; False (and no update) if its loss is not finite."""
        run, model, data = self.runs[b], self.model, self.data
        f, cache = model.forward(run.config, self.theta[b], self.X["train"])
        if self.schedule is None:
            value, g = losses.value_and_grad(data.loss, f, data.y_train)
            if not np.isfinite(value):
                return False
            self.theta[b] = sgd_step(self.theta[b], model.backward(run.config, self.theta[b], cache, g), run.lr, run.wd)
            return True
        log_value, g_normalized = losses.log_normalized_grad(data.loss, f, data.y_train)
        if np.isnan(log_value) or log_value == math.inf or not np.all(np.isfinite(g_normalized)):
            return False
        if self.schedule.normalized(s, log_value):
            lr, g, log_lr = self.schedule.eta, g_normalized, math.log(self.schedule.eta) - log_value
        else:
            lr, log_lr = run.lr, math.log(run.lr)
            g = losses.value_and_grad(data.loss, f, data.y_train)[1]
        self.theta[b] = sgd_step(self.theta[b], model.backward(run.config, self.theta[b], cache, g), lr, 0.0)
        self.log_time[b] = np.logaddexp(self.log_time[b], log_lr)
        return True

    def metrics(self) -> list[dict[str, float]]:
        out = []
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            for b, run in enumerate(self.runs):
                f = self.model.forward(run.config, self.theta[b], self.X["train"])[0]  # checked state: no re-check
                value = losses.value_and_grad(self.data.loss, f, self.data.y_train)[0]
                row = evaluate(self.model, run.config, self.theta[b], self.data, f, value)
                if self.schedule is not None:
                    row["log_time"] = float(self.log_time[b])
                out.append(row)
        return out

    def outputs(self, split: str) -> list[np.ndarray]:
        return [self.model.forward(r.config, p, self.X[split])[0] for r, p in zip(self.runs, self.theta, strict=True)]

    def params(self) -> list[dict[str, np.ndarray]]:
        return [{k: v.copy() for k, v in p.items()} for p in self.theta]

    def state(self) -> dict[str, np.ndarray]:
        out = {"step": np.array(self.step), "diverged_at": self.diverged_at.copy(), "log_time": self.log_time.copy()}
        out.update({f"run{b}/{k}": v.copy() for b, p in enumerate(self.theta) for k, v in p.items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.step = int(state["step"])
        self.diverged_at = np.array(state["diverged_at"], np.int64)
        self.log_time = np.array(state["log_time"], np.float64)
        self.theta = [{k: np.array(state[f"run{b}/{k}"]) for k in p} for b, p in enumerate(self.theta)]
