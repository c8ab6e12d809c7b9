"""The Numba backend's training driver: refimpl.train.run's contract, many compiled steps per call.

Between two recorded steps one compiled call advances the parameters (forward, loss, backward and the
coupled weight-decay update, fused); at each recorded step the metrics are computed by compiled loss
functions on compiled forward passes. Only input validation (refimpl.train.check_run) and the trajectory
container are shared with the reference; none of its math is called, so comparing the two is not circular.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from tqdm.auto import tqdm

from dichotomy.refimpl import errors, models
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.train import check_run, describe
from dichotomy.refimpl.trajectory import Trajectory

DTYPES = {"float64": np.float64, "float32": np.float32}


def record_metrics(engine, data: Dataset, L: int) -> tuple[dict, float]:
    """The metrics refimpl.train.evaluate records, from compiled forward passes and losses."""
    f_train, f_test = engine.outputs("train"), engine.outputs("test")
    y_train, y_test = engine.targets("train"), engine.targets("test")
    value, norm = float(engine.loss(f_train, y_train)), engine.norm()
    out = {"train_loss": value, "train_log_loss": float(engine.log_loss(f_train, y_train)),
           "test_loss": float(engine.loss(f_test, y_test)), "param_norm": norm}
    if data.task != "regression":
        out["train_acc"] = float(engine.accuracy(f_train, y_train))
        out["test_acc"] = float(engine.accuracy(f_test, y_test))
        out["margin"] = engine.min_margin(f_train, y_train) / norm**L if norm > 0 else 0.0
    return out, value


def run(model: ModuleType | str, config, params: dict[str, np.ndarray], data: Dataset, *, lr: float,
        wd: float, steps: int, record=None, probe=None, progress: bool = False, run_config: dict | None = None,
        dtype: str = "float64", engines: dict | None = None, backend: str = "numba") -> Trajectory:
    """refimpl.train.run, compiled. ``dtype="float32"`` trains in single precision (docs/benchmarks.md).

    ``engines`` (model stem -> engine class; default the numba ones) lets the CuPy backend reuse this
    driver with its GPU engines; ``backend`` names it in the trajectory's config.
    """
    from dichotomy.kernels.numba import ENGINES

    engines = ENGINES if engines is None else engines

    model = models.get(model) if isinstance(model, str) else model
    lr, wd, steps, record, probe = check_run(model, config, params, data, lr, wd, steps, record, probe)
    if dtype not in DTYPES:
        raise errors.ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    engine = engines[model.__name__.rsplit(".", 1)[-1]](config, params, data, DTYPES[dtype], probe)
    L = models.degree(model, config)
    cfg = describe(config, data, backend, run_config, lr=lr, wd=wd, steps=steps, dtype=dtype)
    rows, outputs = [], []

    def trajectory(status):
        return Trajectory.from_rows(record, rows, engine.params(), cfg, status, lr=lr,
                                    outputs=None if probe is None else outputs)

    bar = tqdm(total=steps, disable=not progress, unit="step", dynamic_ncols=True, mininterval=0.5)
    s = 0
    # Overflow is detected explicitly (a non-finite loss), so NumPy's warnings would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            for target in record:
                done, value = engine.advance(int(target - s), lr, wd)
                if done < target - s:
                    raise errors.TrainingDiverged(s + done, lr, trajectory("diverged"))
                s = int(target)
                row, value = record_metrics(engine, data, L)
                if not np.isfinite(value):
                    raise errors.TrainingDiverged(s, lr, trajectory("diverged"))
                rows.append(row)
                if probe is not None:
                    outputs.append(engine.outputs("probe").astype(np.float64))
                bar.set_postfix({k: f"{row[k]:.4g}" for k in ("train_loss", "test_loss", "test_acc") if k in row},
                                refresh=False)
                bar.update(s - bar.n)
            if s < steps:  # updates after the last recorded step (a record schedule may stop early)
                done, _ = engine.advance(steps - s, lr, wd)
                if done < steps - s:
                    raise errors.TrainingDiverged(s + done, lr, trajectory("diverged"))
        except KeyboardInterrupt:
            raise errors.TrainingInterrupted(s, trajectory("interrupted")) from None
        finally:
            bar.close()
    return trajectory("completed")
