"""The reference training driver: full-batch GD with coupled weight decay, metrics on a schedule.

:func:`run` is the float64 oracle every backend is compared with (docs/user-guide.md). Per recorded step
it stores, for parameters theta_s after s updates:

- ``time`` = lr * s (the paper's continuous time t),
- ``train_loss``, ``train_log_loss`` (log L in log space, finite at huge margins), ``test_loss``,
- ``train_acc``, ``test_acc``, ``margin`` (min_i margin_i / ||theta||^L) for classification,
- ``param_norm`` = ||theta_s||_2,

and, when a ``probe`` set is given, the outputs f(theta_s; probe) in ``Trajectory.outputs``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from tqdm.auto import tqdm

from dichotomy.refimpl import errors, losses, models
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.optim import sgd_step
from dichotomy.refimpl.trajectory import Trajectory, record_steps
from dichotomy.refimpl.tree import all_finite, param_norm


def check_run(model: ModuleType, config, params, data: Dataset, lr, wd, steps, record, probe=None):
    """Validate everything :func:`run` is given; return (lr, wd, steps, record, probe) normalized."""
    lr = errors.positive("learning rate lr", lr)
    wd = errors.positive("weight decay wd", wd, allow_zero=True)
    steps = errors.positive_int("steps", steps, minimum=0)
    if not all_finite(params):
        raise errors.ConfigError("the initial parameters contain NaN or inf")
    for split in ("train", "test"):
        X = model.check_inputs(config, getattr(data, f"X_{split}"))
        f_shape = model.predict(config, params, X[:1]).shape
        losses.check_targets(data.loss, (X.shape[0],) + f_shape[1:], getattr(data, f"y_{split}"))
    record = record_steps(steps) if record is None else np.unique(np.asarray(record, dtype=np.int64))
    if record.size == 0 or record[0] < 0 or record[-1] > steps:
        raise errors.ConfigError(f"record steps must lie in [0, steps={steps}]")
    if probe is not None:
        probe = _hot_copy(model.check_inputs(config, probe))
    return lr, wd, steps, record, probe


def _hot_copy(X: np.ndarray) -> np.ndarray:
    """A float64 copy of exact small-integer inputs (+-1 data) read every step; index pairs stay integer."""
    if X.dtype.kind == "i" and X.dtype.itemsize == 1 and X.size <= 1 << 25:
        return X.astype(np.float64)
    return X


def describe(config, data: Dataset, backend: str, run_config: dict | None = None, **settings) -> dict:
    """The config stored with a trajectory: model config, dataset, loss, optimizer settings, backend."""
    return {"model_config": vars(config), "data": data.info, "loss": data.loss, **settings, "backend": backend,
            **(run_config or {})}


def evaluate(model: ModuleType, config, params, data: Dataset, f_train: np.ndarray,
             train_loss: float) -> dict[str, float]:
    """Every metric at one recorded step, given the train outputs and loss already computed."""
    task, L = data.task, models.degree(model, config)
    f_test = model.predict(config, params, data.X_test)
    norm = param_norm(params)
    out = {"train_loss": train_loss, "train_log_loss": losses.log_value(data.loss, f_train, data.y_train),
           "test_loss": losses.value_and_grad(data.loss, f_test, data.y_test)[0], "param_norm": norm}
    if task != "regression":
        out["train_acc"] = losses.accuracy(task, f_train, data.y_train)
        out["test_acc"] = losses.accuracy(task, f_test, data.y_test)
        out["margin"] = losses.normalized_margin(task, f_train, data.y_train, norm, L) if norm > 0 else 0.0
    return out


def run(model: ModuleType | str, config, params: dict[str, np.ndarray], data: Dataset, *, lr: float,
        wd: float, steps: int, record=None, probe=None, progress: bool = False,
        run_config: dict | None = None) -> Trajectory:
    """Train ``steps`` full-batch GD steps p <- p - lr (g + wd p) and record metrics at ``record`` steps.

    Parameters
    ----------
    model : module or str
        A model module of :mod:`refimpl.models` or its name (``diagonal-net`` ...).
    config : the model's ``Config``
    params : dict of ndarray
        Initial parameters; not modified.
    data : Dataset
    lr, wd : float
        Learning rate (> 0) and coupled weight decay (>= 0).
    steps : int
        Number of updates.
    record : array of int, optional
        Steps in [0, steps] at which to record; default :func:`refimpl.trajectory.record_steps`.
    probe : array, optional
        Inputs whose outputs are recorded at every recorded step (``Trajectory.outputs``); see
        :func:`refimpl.limits.transition.default_probe`.
    progress : bool
        Show a tqdm progress bar with the latest metrics.
    run_config : dict, optional
        Extra JSON-serializable description stored in the trajectory (seed, preset, ...).

    Raises
    ------
    TrainingDiverged
        At the first step whose train loss is not finite; ``.trajectory`` holds what was recorded.
    TrainingInterrupted
        On Ctrl-C; ``.trajectory`` holds what was recorded.
    """
    model = models.get(model) if isinstance(model, str) else model
    lr, wd, steps, record, probe = check_run(model, config, params, data, lr, wd, steps, record, probe)
    cfg = describe(config, data, "numpy", run_config, lr=lr, wd=wd, steps=steps)
    X_train = _hot_copy(data.X_train)
    rows: list[dict[str, float]] = []
    outputs: list[np.ndarray] = []

    def trajectory(status):
        return Trajectory.from_rows(record, rows, params, cfg, status, lr=lr,
                                    outputs=None if probe is None else outputs)

    bar = tqdm(total=steps, disable=not progress, unit="step", dynamic_ncols=True, mininterval=0.5)
    next_rec, s = 0, 0
    try:
        # Overflow is detected explicitly (a non-finite loss), so NumPy's warnings would only be noise.
        with np.errstate(over="ignore", invalid="ignore"):
            for s in range(steps + 1):
                f, cache = model.forward(config, params, X_train)
                value, g = losses.value_and_grad(data.loss, f, data.y_train)
                if not np.isfinite(value):
                    raise errors.TrainingDiverged(s, lr, trajectory("diverged"))
                if next_rec < len(record) and s == record[next_rec]:
                    rows.append(evaluate(model, config, params, data, f, value))
                    if probe is not None:
                        outputs.append(model.predict(config, params, probe))
                    next_rec += 1
                    bar.set_postfix({k: f"{rows[-1][k]:.4g}" for k in ("train_loss", "test_loss", "test_acc")
                                     if k in rows[-1]}, refresh=False)
                    bar.update(s - bar.n)
                if s == steps:
                    break
                params = sgd_step(params, model.backward(config, params, cache, g), lr, wd)
    except KeyboardInterrupt:
        raise errors.TrainingInterrupted(s, trajectory("interrupted")) from None
    finally:
        bar.close()
    return trajectory("completed")


def run_loss_normalized(model: ModuleType | str, config, params: dict[str, np.ndarray], data: Dataset, *,
                        eta: float, steps: int, warmup_lr: float = 0.0, warmup_steps: int = 0, record=None,
                        progress: bool = False, run_config: dict | None = None) -> Trajectory:
    """GD without weight decay at the loss-normalized learning rate eta / L(theta) (Fig. 4, Appendix B.1).

    ``warmup_steps`` plain steps at ``warmup_lr`` come first (the official code's initial phase), then
    theta <- theta - eta (dL/dtheta) / L, with (dL/df) / L formed in log space
    (:func:`refimpl.losses.log_normalized_grad`), so the run goes on where L underflows to 0. The
    continuous time t = sum of the effective learning rates is kept as ``log_time`` = ln t (float64 holds
    ln t far beyond where t itself overflows); ``time`` is exp(log_time) and may be inf. Every other metric
    is :func:`run`'s.
    """
    model = models.get(model) if isinstance(model, str) else model
    eta = errors.positive("eta", eta)
    warmup_lr = errors.positive("warmup_lr", warmup_lr, allow_zero=True)
    warmup_steps = errors.positive_int("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps and not warmup_lr:
        raise errors.ConfigError("warmup_steps > 0 needs warmup_lr > 0")
    _, _, steps, record, _ = check_run(model, config, params, data, eta, 0.0, steps, record)
    cfg = describe(config, data, "numpy", run_config, eta=eta, wd=0.0, warmup_lr=warmup_lr,
                   warmup_steps=warmup_steps, steps=steps, schedule="eta / L(theta)")
    X_train = _hot_copy(data.X_train)
    rows: list[dict[str, float]] = []
    log_time = -np.inf

    def trajectory(status):
        traj = Trajectory.from_rows(record, rows, params, cfg, status)
        with np.errstate(over="ignore"):
            traj.metrics["time"] = np.exp(traj.metrics.get("log_time", np.zeros(0)))
        return traj

    bar = tqdm(total=steps, disable=not progress, unit="step", dynamic_ncols=True, mininterval=0.5)
    next_rec, s = 0, 0
    try:
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            for s in range(steps + 1):
                f, cache = model.forward(config, params, X_train)
                if s < warmup_steps:
                    value, g = losses.value_and_grad(data.loss, f, data.y_train)
                    log_value, log_lr = np.log(value), np.log(warmup_lr)
                else:
                    log_value, g = losses.log_normalized_grad(data.loss, f, data.y_train)
                    value, log_lr = float(np.exp(log_value)), np.log(eta) - log_value
                if not (np.isfinite(log_value) or log_value == -np.inf) or not np.all(np.isfinite(g)):
                    raise errors.TrainingDiverged(s, eta, trajectory("diverged"))
                if next_rec < len(record) and s == record[next_rec]:
                    rows.append({**evaluate(model, config, params, data, f, value), "log_time": log_time})
                    next_rec += 1
                    bar.set_postfix({"log10_t": f"{log_time / np.log(10):.4g}", "test_acc":
                                     f"{rows[-1].get('test_acc', np.nan):.3g}"}, refresh=False)
                    bar.update(s - bar.n)
                if s == steps:
                    break
                step = eta if s >= warmup_steps else warmup_lr
                params = sgd_step(params, model.backward(config, params, cache, g), step, 0.0)
                log_time = np.logaddexp(log_time, log_lr)
    except KeyboardInterrupt:
        raise errors.TrainingInterrupted(s, trajectory("interrupted")) from None
    finally:
        bar.close()
    return trajectory("completed")
