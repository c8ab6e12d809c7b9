"""The dichotomy diagnostic: which limit a trajectory is at, and when it switches (docs/limits.md §7).

Along a run recorded with a probe set (``Trajectory.outputs``), :func:`diagnose` measures at every recorded
step the distance from the network's outputs to the kernel predictor (K1/K2 at theta_bar) and to the
late-phase predictor (max-L1-margin, min-L1 or min-nuclear-norm), predicts the switch at
t* = ln(alpha) / lambda, and measures it on a test metric.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from types import ModuleType

import numpy as np

from dichotomy.refimpl import blocks, errors, files, losses
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.errors import ConfigError, DichotomyError
from dichotomy.refimpl.limits import kernel_predictors, kkt, max_margin, min_norm, ntk
from dichotomy.refimpl.trajectory import Trajectory

PROBE_SIZE = 512


def default_probe(data: Dataset) -> np.ndarray:
    """The probe set of a run: the first :data:`PROBE_SIZE` test inputs (test sets are drawn in random order)."""
    return data.X_test[:PROBE_SIZE]


@dataclass(frozen=True)
class Predictor:
    """A limit evaluated on the probe set (``outputs``), or the ``reason`` it was not computed.

    ``solution`` is the solver's own result (a KernelPredictor, LinearClassifier, L1Solution or
    Completion), for evaluating the limit elsewhere than on the probe set without solving it again.
    """

    name: str
    outputs: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    reason: str = ""
    solution: object = None

    def solved(self):
        """``solution``, or the ConfigError saying why the limit could not be computed."""
        if self.solution is None:
            raise ConfigError(f"the {self.name} limit was not computed: {self.reason}")
        return self.solution


def kernel_limit(module: ModuleType, config, params0, data: Dataset, probe) -> Predictor:
    """The NTK predictor (K1 or K2) at the unit-scale init, on ``probe``."""
    try:
        kp = kernel_predictors.kernel_predictor(module, config, params0, data.X_train, data.y_train, data.loss)
    except DichotomyError as e:
        return Predictor("kernel", reason=str(e))
    info = {"problem": kp.problem, "norm": kp.norm, "accuracy": kp.accuracy}
    if kp.margin is not None:
        info["gamma_ntk"] = kp.margin
    return Predictor(f"kernel ({kp.problem})", kp.predict(module, config, probe), info, solution=kp)


def late_limit(module: ModuleType, config, data: Dataset, probe) -> Predictor:
    """The global optimum of R1/R2 where it is a convex program, on ``probe``.

    L = 2 diagonal net: max-L1-margin classifier or min-L1 interpolant; factorization: min-nuclear-norm
    completion. Other models have no convex reformulation: use :func:`refimpl.limits.kkt.kkt_residual`.
    """
    which = module.late_limit(config, data.task)
    if which is None:
        return Predictor("late", reason=f"{module.NAME} (L={module.degree(config)}) has no convex form of R1/R2 "
                                        f"for {data.task} data; see the KKT residual at the final parameters")
    try:
        return _LATE_LIMITS[which](config, data, probe)
    except DichotomyError as e:
        return Predictor("late", reason=str(e))


def _max_l1_margin(config, data: Dataset, probe) -> Predictor:
    sol = max_margin.max_l1_margin(data.X_train, data.y_train)
    return Predictor("max-L1-margin", blocks.matvec(probe, sol.w), {"l1_margin": sol.margin, "gap": sol.gap},
                     solution=sol)


def _min_l1_interpolation(config, data: Dataset, probe) -> Predictor:
    sol = min_norm.min_l1_interpolation(data.X_train, data.y_train)
    return Predictor("min-L1 interpolant", blocks.matvec(probe, sol.w), {"l1_norm": sol.norm, "gap": sol.gap},
                     solution=sol)


def _min_nuclear_norm(config, data: Dataset, probe) -> Predictor:
    c = min_norm.nuclear_norm_completion(config.d, data.X_train, data.y_train)
    return Predictor("min-nuclear-norm", c.W[probe[:, 0], probe[:, 1]],
                     {"nuclear_norm": c.nuclear_norm, "gap": c.gap, "residual": c.residual}, solution=c)


# The late limits by the name a model's ``late_limit`` gives (the solvers of refimpl.limits).
_LATE_LIMITS = {"max-l1-margin": _max_l1_margin, "min-l1-interpolation": _min_l1_interpolation,
                "min-nuclear-norm": _min_nuclear_norm}


def distance(outputs: np.ndarray, target: np.ndarray, task: str) -> np.ndarray:
    """Distance of each recorded output vector (rows of ``outputs``, (m, n_probe[, out])) to ``target``.

    Classification: || f / ||f|| - f* / ||f*|| || in [0, 2] (the limits are directions: Theorem 3.4 divides
    by a growing Z(alpha)); NaN where f = 0. Regression: ||f - f*|| / ||f*||. ``task`` is binary,
    multiclass or regression (:data:`refimpl.losses.TASKS`); each row of ``outputs`` has as many entries as ``target``.
    """
    tasks = sorted(set(losses.TASKS.values()))
    if task not in tasks:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(tasks)}")
    outputs, target = np.asarray(outputs), np.asarray(target)
    if outputs.ndim < 1 or math.prod(outputs.shape[1:]) != target.size:
        raise ConfigError(f"outputs of shape {outputs.shape} (steps, probe[, out]) do not match a target of shape "
                          f"{target.shape}: each recorded step needs one output per target entry")
    F = outputs.reshape(len(outputs), target.size)
    t = target.ravel()
    if task == "regression":
        return np.linalg.norm(F - t, axis=1) / max(np.linalg.norm(t), np.finfo(float).tiny)
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(norms > 0, F / norms, np.nan)
    return np.linalg.norm(unit - t / np.linalg.norm(t), axis=1)


def predicted_time(module: ModuleType, config, lr: float, wd: float) -> dict:
    """t* = ln(alpha) / lambda (continuous time) and t* / lr (steps), with alpha's convention stated.

    ``lr`` must be finite and > 0, ``wd`` finite and >= 0 (a ConfigError otherwise). Where the theory gives no
    switch time, ``time`` and ``steps`` are NaN (alpha <= 1: the dichotomy is a large-init statement, alpha ->
    infinity, and ln(alpha) <= 0 predicts nothing) or infinite (wd = 0, no weight decay: the late phase never
    comes), and ``note`` says why; ``note`` is "" otherwise.
    """
    lr = errors.positive("learning rate lr", lr)
    wd = errors.positive("weight decay wd", wd, allow_zero=True)
    alpha = float(ntk.scale_of(module, config))
    convention = module.SCALE_CONVENTION
    out = {"alpha": alpha, "convention": convention}
    if not math.isfinite(alpha) or alpha <= 0:
        return {**out, "time": math.nan, "steps": math.nan,
                "note": f"undefined: ln(alpha) needs an init scale alpha > 0, got alpha = {alpha:g}"}
    if alpha <= 1:
        return {**out, "time": math.nan, "steps": math.nan,
                "note": f"undefined: t* = ln(alpha)/lambda describes a large init (alpha > 1), got alpha = "
                        f"{alpha:g}"}
    if wd == 0:
        return {**out, "time": math.inf, "steps": math.inf,
                "note": "never: without weight decay (lambda = 0) the switch does not come"}
    t = math.log(alpha) / wd
    return {**out, "time": t, "steps": t / lr, "note": ""}


@dataclass(frozen=True)
class Transition:
    """A switch measured on one test metric: its plateau (median over the decade after the training set is
    fit) and final value; the first steps at which it has gone 10%, 50% and 90% of the way (linear
    interpolation between recorded steps); ``width`` = step_90 - step_10."""

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
    """First recorded step at which the training set is fit: 100% train accuracy (classification), or the
    train loss below 1e-3 of its initial value (regression); the last step if never."""
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


def measured_transition(traj: Trajectory, metric: str | None = None, *, min_change: float = 0.1,
                        ) -> Transition | None:
    """The switch of ``metric`` (default: test_acc, or test_loss for regression), None if it moves by less
    than ``min_change`` between the plateau and the end of the run: absolute for accuracies (0.1 = ten
    points), relative to the larger of the two values for losses."""
    metric = metric or ("test_acc" if "test_acc" in traj.metrics else "test_loss")
    if metric not in traj.metrics:
        raise ConfigError(f"the trajectory has no metric {metric!r}; it has {', '.join(traj.metrics)}")
    steps, values = traj.steps, traj.metrics[metric]
    s0 = max(fit_step(traj), 1)
    window = (steps >= s0) & (steps <= 10 * s0)
    plateau = float(np.median(values[window])) if window.any() else float(values[0])
    final = float(values[-1])
    scale = 1.0 if metric.endswith("acc") else max(abs(plateau), abs(final))
    if abs(final - plateau) <= min_change * scale:
        return None
    start = int(np.argmax(steps >= s0))
    direction = 1.0 if final > plateau else -1.0
    at = [_crossing(steps, values, start, plateau + q * (final - plateau), direction) for q in (0.1, 0.5, 0.9)]
    return Transition(metric, plateau, final, *at)


@dataclass(frozen=True)
class Diagnosis:
    """Distances to both limits at every recorded step, and the predicted and measured switch."""

    steps: np.ndarray
    kernel: Predictor
    late: Predictor
    kernel_distance: np.ndarray
    late_distance: np.ndarray
    predicted: dict
    measured: Transition | None
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
        """Everything as JSON-serializable values (arrays as lists, NaN and infinities as null; the predicted
        switch's ``note`` says why it is not a number)."""
        def clean(a):
            return [None if not np.isfinite(x) else float(x) for x in np.asarray(a, dtype=float)]
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
                     measured_transition(traj, metric), residual)
