"""Training runs for the claims: a preset plus overrides on a backend, one run or a sweep on one dataset."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from dichotomy import errors
from dichotomy.experiments import presets
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.limits import predictors
from dichotomy.refimpl.steppers import Flow
from dichotomy.run.trajectory import Trajectory, record_steps


def schedule(steps: int) -> np.ndarray:
    """The claims' record schedule: every step to 100, then 100 log-spaced steps per decade.

    A switch's position is read to ~2%; the training driver's default, 1000 dense steps, costs more than the run.
    """
    return record_steps(steps, dense=100, per_decade=100)


@dataclass
class Run:
    """A finished run and everything needed to compare it with the limits."""

    traj: Trajectory
    module: ModuleType
    config: object
    params0: dict
    data: Dataset
    probe: np.ndarray
    preset: presets.Preset


def preset_of(spec: dict) -> presets.Preset:
    """``{"preset": NAME, "overrides": {...}}`` -> the overridden Preset."""
    return presets.override(presets.get(spec["preset"]), **spec.get("overrides", {}))


def stepper_of(spec: dict) -> Flow | None:
    """The stepper a run spec asks for: ``"flow": {"rtol": ...}`` integrates the gradient flow; GD otherwise."""
    flow = spec.get("flow")
    if flow is None:
        return None
    if not isinstance(flow, dict):
        raise errors.ConfigError(f"a run's 'flow' must be a dict of Flow settings such as {{'rtol': 1e-6}}, got "
                                 f"{flow!r}")
    try:
        return Flow(**flow)
    except TypeError as e:
        raise errors.ConfigError(f"a run's 'flow' settings: {e}") from None


def train(spec: dict, backend, *, progress: bool = False, label: str = "", watch=None) -> Run:
    """Train the preset ``spec`` names on ``backend``, recording the default probe outputs.

    ``spec`` may also ask for the gradient flow (``"flow"``, :func:`stepper_of`); ``watch(module, data)``, when
    given, returns the run's extra metrics (:func:`dichotomy.run.driver.run`'s ``watch``).
    """
    preset = preset_of(spec)
    module, config, params, data = presets.build(preset)
    probe = predictors.default_probe(data)
    traj = backend.run(module, config, params, data, lr=preset.lr, wd=preset.wd, steps=preset.steps,
                       record=schedule(preset.steps), probe=probe, progress=progress, label=label,
                       schedule=stepper_of(spec), watch=None if watch is None else watch(module, data))
    return Run(traj, module, config, params, data, probe, preset)


def sweep(spec: dict, backend, changes: list[dict], *, progress: bool = False) -> list[Run]:
    """Runs of one preset (one dataset) that differ in the model's config or in lr/wd, trained as one batch.

    ``changes[b]`` maps a model Config field, ``lr`` or ``wd`` to its value for run b. They train as one batch of the
    backend's engine (on numba, the diagonal net's runs share one pass over X per step).
    """
    preset = preset_of(spec)
    module, config, _, data = presets.build(preset)
    probe = predictors.default_probe(data)
    configs, params, lrs, wds = [], [], [], []
    for change in changes:
        change = dict(change)
        lrs.append(change.pop("lr", preset.lr))
        wds.append(change.pop("wd", preset.wd))
        try:
            c = dataclasses.replace(config, **change)
        except TypeError as e:
            raise errors.ConfigError(f"sweep of {spec['preset']}: {e}") from None
        configs.append(c)
        params.append(module.init(c, np.random.default_rng(preset.init_seed)))
    trajs = backend.run_batch(module, configs, params, data, lr=lrs, wd=wds, steps=preset.steps, probe=probe,
                              record=schedule(preset.steps), progress=progress, label=f"{len(changes)} runs",
                              schedule=stepper_of(spec))
    for traj in trajs:
        if traj.status != "completed":
            raise errors.TrainingDiverged(traj.config.get("diverged_at", -1), traj.config["lr"], traj)
    return [Run(t, module, c, p, data, probe, preset) for t, c, p in zip(trajs, configs, params, strict=True)]


def at_steps(traj: Trajectory, metric: str, steps) -> np.ndarray:
    """``metric`` at the recorded steps nearest to ``steps`` (no interpolation)."""
    idx = np.clip(np.searchsorted(traj.steps, np.asarray(steps)), 0, len(traj.steps) - 1)
    return traj.metrics[metric][idx]


def linear_fit(x, y, min_points: int = 2) -> tuple[float, float, float]:
    """Least-squares line through the finite points (x_i, y_i): (slope, intercept, R^2).

    NaNs with fewer than ``min_points`` points (R^2 is NaN when y is constant).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < min_points:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    resid = y[ok] - (slope * x[ok] + intercept)
    total = np.sum((y[ok] - y[ok].mean()) ** 2)
    return float(slope), float(intercept), float(1 - np.sum(resid**2) / total) if total > 0 else math.nan
