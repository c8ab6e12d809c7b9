"""Batched runs: B configurations (alpha, lambda, learning rate, init seed) trained on one dataset in one call.

For the diagonal net the batch turns the two matrix-vector products of a step into GEMMs, so one pass over X
serves every run; the completion and MLP batches advance their runs one after another (same results, no
shared work). Each run gets its own Trajectory, exactly what ``run`` would return for it alone.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from dichotomy.kernels.numba.driver import record_metrics
from dichotomy.refimpl import errors, models
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.train import check_run, describe
from dichotomy.refimpl.trajectory import Trajectory


class SequentialBatch:
    """B single-run engines advanced in turn."""

    blas_threads = None  # the engines' own BLAS use: leave OpenBLAS's thread count alone

    def __init__(self, engine_type, configs, params, data, probe):
        self.engines = [engine_type(c, p, data, np.float64, probe) for c, p in zip(configs, params, strict=True)]

    def advance(self, steps, lr, wd, active):
        done = np.zeros(len(self.engines), dtype=np.int64)
        for b, e in enumerate(self.engines):
            if active[b]:
                done[b], _ = e.advance(steps, lr[b], wd[b])
                active[b] = done[b] == steps
        return done


def _per_run(name, value, B) -> np.ndarray:
    """A learning rate or weight decay per run: one number for all, or exactly B of them."""
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return np.full(B, float(value))
    if value.shape != (B,):
        raise errors.ConfigError(f"{name} must be a number or a sequence of {B} numbers, got shape {value.shape}")
    return value.copy()


def run_batch(model: ModuleType | str, configs, params: list[dict], data: Dataset, *, lr, wd, steps: int,
              record=None, probe=None, progress: bool = False, run_config: dict | None = None) -> list[Trajectory]:
    """Train B = len(params) runs on ``data``; ``configs``, ``lr`` and ``wd`` are one value or B values.

    Returns B trajectories; a run that diverges keeps status ``"diverged"`` and stops, the others go on.
    float64 only.
    """
    from dichotomy.kernels.numba import BATCHES, ENGINES

    model = models.get(model) if isinstance(model, str) else model
    B = len(params)
    if B == 0:
        raise errors.ConfigError("run_batch needs at least one set of initial parameters")
    configs = list(configs) if isinstance(configs, list | tuple) else [configs] * B
    if len(configs) != B:
        raise errors.ConfigError(f"{len(configs)} configs for {B} runs")
    lr, wd = _per_run("lr", lr, B), _per_run("wd", wd, B)
    for c, p, a, w in zip(configs, params, lr, wd, strict=True):
        *_, record_b, probe_b = check_run(model, c, p, data, a, w, steps, record, probe)
    record, probe = record_b, probe_b
    name = model.__name__.rsplit(".", 1)[-1]
    batch = (BATCHES[name](configs, params, data, probe) if name in BATCHES
             else SequentialBatch(ENGINES[name], configs, params, data, probe))
    L = models.degree(model, configs[0])
    rows, outputs = [[] for _ in range(B)], [[] for _ in range(B)]
    status = ["completed"] * B
    active = np.ones(B, dtype=np.bool_)

    def trajectory(b):
        cfg = describe(configs[b], data, "numba", run_config, lr=lr[b], wd=wd[b], steps=steps,
                       batch={"index": b, "size": B})
        if status[b] == "diverged":
            cfg["diverged_at"] = int(diverged_at[b])
        return Trajectory.from_rows(record, rows[b], batch.engines[b].params(), cfg, status[b], lr=lr[b],
                                    outputs=None if probe is None else outputs[b])

    diverged_at = np.zeros(B, dtype=np.int64)
    s = 0
    # The diagonal-net batch's skinny GEMMs gain nothing from BLAS threads, and OpenBLAS workers spinning
    # after each GEMM starve the parallel evaluation loops (4x slower on 2 cores): one BLAS thread there.
    with (np.errstate(over="ignore", invalid="ignore"), threadpool_limits(batch.blas_threads, user_api="blas"),
          tqdm(total=steps, disable=not progress, unit="step") as bar):
        for target in list(record) + ([steps] if record[-1] < steps else []):
            was = active.copy()
            done = batch.advance(int(target - s), lr, wd, active)
            for b in np.flatnonzero(was & (done < target - s)):
                active[b], status[b], diverged_at[b] = False, "diverged", s + done[b]
            s = int(target)
            if s not in record:
                break
            for b in np.flatnonzero(active):
                row, value = record_metrics(batch.engines[b], data, L)
                if not np.isfinite(value):
                    active[b], status[b], diverged_at[b] = False, "diverged", s
                    continue
                rows[b].append(row)
                if probe is not None:
                    outputs[b].append(batch.engines[b].outputs("probe").astype(np.float64))
            bar.update(s - bar.n)
    return [trajectory(b) for b in range(B)]
