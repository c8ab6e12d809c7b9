"""The two limits on a probe set, the distance of a network's outputs to them, and the predicted switch time.

:func:`kernel_limit` (K1/K2 at theta_bar) and :func:`late_limit` (max-L1-margin, min-L1 or min-nuclear-norm)
evaluate the limits of docs/limits.md on a probe set; :func:`distance` measures recorded outputs against them;
:func:`predicted_time` is the theory's switch time t* = ln(alpha) / lambda. :mod:`dichotomy.diagnosis` reads a
trajectory with these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from dichotomy.errors import ConfigError, DichotomyError
from dichotomy.refimpl import blocks, checks, losses
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.limits import kernel_predictors, max_margin, min_norm, ntk

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
    lr = checks.positive("learning rate lr", lr)
    wd = checks.positive("weight decay wd", wd, allow_zero=True)
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
