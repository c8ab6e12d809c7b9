"""The gradient flow as an engine: B runs, each integrated with error control to the times its GD would reach.

A flow engine keeps the engine protocol (:mod:`refimpl.engine`) with ``continuous = True``. Run b, with learning
rate lr_b, stands for GD's step s at time t = lr_b s: the driver asks for the records' steps and the engine lands
every run exactly on its time lr_b x step (:class:`refimpl.steppers.Flow`). Its ``step`` is a float, the step
every live run has reached, and the driver advances it with ``advance_toward(target, max_steps)``: at most
``max_steps`` accepted steps of the integrator per run, toward the step ``target``. A piece of a given number of
steps is the same piece however the integration is cut (:func:`refimpl.flow.advance_to`), so a run's numbers
do not depend on the driver's wall-clock chunks, and a resumed checkpoint ends bit for bit.

:class:`FlowRuns` is the bookkeeping every backend's flow engine shares: the per-run :class:`FlowState`, landing,
divergence and checkpoint state; the metrics, outputs and parameters come from a GD engine of the same backend
(``inner``) holding the flow's current parameters. A backend supplies ``integrate(b, t_end, max_steps)`` and
``push(b)``. :class:`ReferenceFlowEngine` is the NumPy definition.
"""

from __future__ import annotations

import math

import numpy as np

from dichotomy.errors import FlowFailed
from dichotomy.refimpl import flow, losses
from dichotomy.refimpl.engine import ReferenceEngine, RunSpec, hot_copy
from dichotomy.refimpl.params import flatten, unflatten
from dichotomy.refimpl.steppers import Flow

PIECE = 4096  # accepted steps per call when a caller wants a whole gap (a time per call stays meaningful)


class FlowRuns:
    """B runs of the flow (see the module docstring); a backend adds ``start``, ``integrate`` and ``push``."""

    continuous = True

    def __init__(self, inner, runs: list[RunSpec], stepper: Flow):
        self.inner, self.stepper = inner, stepper
        self.B, self.step = len(runs), 0.0
        # the integration variable per unit of step: the time lr_b, or (the loss-normalized flow) the step itself
        self.lr = [1.0 if stepper.loss_normalized else float(r.lr) for r in runs]
        self.like = [r.params for r in runs]
        self.diverged_at = np.full(self.B, -1, np.int64)
        self.failure: list[str | None] = [None] * self.B
        self.log_time = np.full(self.B, -math.inf)  # ln t of the loss-normalized flow
        self.states = [self.start(b, r) for b, r in enumerate(runs)]

    # -- what a backend supplies ------------------------------------------------------------------------------
    def start(self, b: int, run: RunSpec) -> flow.FlowState:
        raise NotImplementedError

    def integrate(self, b: int, t_end: float, max_steps: int) -> None:
        """Advance ``self.states[b]`` toward ``t_end`` by at most ``max_steps`` accepted steps; FlowFailed if stuck."""
        raise NotImplementedError

    def push(self, b: int) -> None:
        """Give run b's current parameters (``self.states[b].y``) to the inner engine."""
        raise NotImplementedError

    # -- the protocol -----------------------------------------------------------------------------------------
    def advance_toward(self, target: float, max_steps: int) -> int:
        """At most ``max_steps`` accepted steps of every live run toward the step ``target``; returns the most taken."""
        most = 0
        for b in np.flatnonzero(self.diverged_at < 0):
            state, t_end = self.states[b], self.lr[b] * float(target)
            if state.t >= t_end:
                continue
            before = state.accepted
            try:
                self.integrate(b, t_end, max_steps)
            except FlowFailed as e:  # its first step past the time it reached is the first it does not reach
                self.diverged_at[b] = math.floor(state.t / self.lr[b]) + 1
                self.failure[b] = str(e)
            most = max(most, state.accepted - before)
            self.push(b)
        live = np.flatnonzero(self.diverged_at < 0)
        reached = all(self.states[b].t >= self.lr[b] * float(target) for b in live)
        self.step = float(target) if reached else min(self.states[b].t / self.lr[b] for b in live)
        return most

    def advance(self, steps: int) -> None:
        """The GD protocol's call: to ``step + steps`` in one piece (the driver uses :meth:`advance_toward`)."""
        target = self.step + steps
        while self.step < target and np.any(self.diverged_at < 0):
            self.advance_toward(target, PIECE)

    def integrator(self, b: int) -> dict:
        """What run b's sidecar records: the method, its tolerance and what the integration cost."""
        s = self.states[b]
        return {"method": self.stepper.method, "rtol": self.stepper.rtol, "grad_evals": s.grad_evals,
                "accepted": s.accepted, "rejected": s.rejected, "last_step": s.h,
                **({"failed": self.failure[b]} if self.failure[b] else {})}

    def metrics(self) -> list[dict[str, float]]:
        rows = self.inner.metrics()
        if self.stepper.loss_normalized:
            for row, log_time in zip(rows, self.log_time, strict=True):
                row["log_time"] = float(log_time)
        return rows

    def outputs(self, split: str) -> list[np.ndarray]:
        return self.inner.outputs(split)

    def params(self) -> list[dict[str, np.ndarray]]:
        return self.inner.params()

    def state(self) -> dict[str, np.ndarray]:
        out = {"step": np.array(self.step), "diverged_at": self.diverged_at.copy(), "log_time": self.log_time.copy()}
        for b, s in enumerate(self.states):
            out.update({f"flow{b}/{k}": v for k, v in flow.to_arrays(s).items()})
            if self.failure[b]:
                out[f"failed/{b}"] = np.array(self.failure[b])  # a unicode array: no pickle
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.step = float(state["step"])
        self.diverged_at = np.array(state["diverged_at"], np.int64)
        self.log_time = np.array(state["log_time"], np.float64)
        for b in range(self.B):
            self.states[b] = flow.from_arrays({k.split("/", 1)[1]: v for k, v in state.items()
                                               if k.startswith(f"flow{b}/")})
            self.failure[b] = str(state[f"failed/{b}"]) if f"failed/{b}" in state else None
            self.push(b)


class ReferenceFlowEngine(FlowRuns):
    """The float64 definition: the model module's forward/backward as the field, :mod:`refimpl.flow` per run.

    It also integrates the loss-normalized flow (``Flow(eta=...)``), with its time in log space.
    """

    name = "numpy"

    @classmethod
    def unsupported(cls, model, runs, data, dtype, schedule) -> str | None:
        if dtype != "float64":
            return f"the gradient flow is integrated in float64 only, not {dtype}"
        if schedule.loss_normalized and any(r.wd != 0 for r in runs):
            return "the loss-normalized flow has no weight decay: pass wd=0"
        return None

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule: Flow):
        self.model, self.data, self.runs = model, data, runs
        self.X = hot_copy(data.X_train)
        self.log_rate = [math.nan] * len(runs)  # ln(dt/ds) at the current point (the loss-normalized flow)
        super().__init__(ReferenceEngine(model, runs, data, probe=probe), runs, schedule)

    def _normalized(self, log_value: float) -> bool:
        return log_value <= self.stepper.switch_log_loss

    def field(self, b: int):
        """y -> d theta/dt = -(grad L(y) + wd y) for run b, on flat float64 parameters (P,).

        For the loss-normalized flow, d theta/ds: -lr grad L, or -eta grad L / L at and below the switch.
        """
        run, model, data, like, stepper = self.runs[b], self.model, self.data, self.like[b], self.stepper

        def fieldf(y: np.ndarray) -> np.ndarray:
            with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
                p = unflatten(y, like)
                f, cache = model.forward(run.config, p, self.X)
                if stepper.loss_normalized:
                    log_value, g = losses.log_normalized_grad(data.loss, f, data.y_train)
                    if math.isnan(log_value) or log_value == math.inf or not np.all(np.isfinite(g)):
                        return np.full_like(y, np.nan)
                    rate = stepper.eta if self._normalized(log_value) else run.lr
                    if not self._normalized(log_value):
                        g = losses.value_and_grad(data.loss, f, data.y_train)[1]
                    return -rate * flatten(model.backward(run.config, p, cache, g))
                value, g = losses.value_and_grad(data.loss, f, data.y_train)
                if not math.isfinite(value):
                    return np.full_like(y, np.nan)
                return -(flatten(model.backward(run.config, p, cache, g)) + run.wd * y)

        return fieldf

    def _log_rate(self, b: int, y: np.ndarray) -> float:
        """ln(dt/ds) at y: ln lr, or ln eta - ln L(y) where the flow is normalized."""
        run = self.runs[b]
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            f = self.model.forward(run.config, unflatten(y, self.like[b]), self.X)[0]
            log_value = losses.log_normalized_grad(self.data.loss, f, self.data.y_train)[0]
        return math.log(self.stepper.eta) - log_value if self._normalized(log_value) else math.log(run.lr)

    def start(self, b, run):
        y0 = flatten(run.params)
        if self.stepper.loss_normalized:
            self.log_rate[b] = self._log_rate(b, y0)
        return flow.start(self.field(b), y0, rtol=self.stepper.rtol)

    def integrate(self, b, t_end, max_steps):
        s, state = self.stepper, self.states[b]
        options = dict(rtol=s.rtol, h_min=s.h_min, max_rejections=s.max_rejections)
        if not s.loss_normalized:
            flow.advance_to(self.field(b), state, t_end, max_steps=max_steps, **options)
            return
        fieldf = self.field(b)
        for _ in range(max_steps):  # one step at a time: the time's trapezoid rule needs each step's ends
            if state.t >= t_end:
                return
            s0 = state.t
            flow.advance_to(fieldf, state, t_end, max_steps=1, **options)
            log_rate = self._log_rate(b, state.y)
            log_half = math.log((state.t - s0) / 2)
            self.log_time[b] = np.logaddexp(self.log_time[b], log_half + np.logaddexp(self.log_rate[b], log_rate))
            self.log_rate[b] = log_rate

    def load_state(self, state):
        super().load_state(state)
        if self.stepper.loss_normalized:
            self.log_rate = [self._log_rate(b, s.y) for b, s in enumerate(self.states)]

    def push(self, b):
        self.inner.theta[b] = unflatten(self.states[b].y, self.like[b])
