"""What every Numba engine shares: the B-run bookkeeping of the engine protocol and the compiled metrics.

A model's engine subclasses :class:`NumbaEngine` and provides, per run b, ``advance_run(b, steps)`` (a compiled
multi-step loop returning the steps done before a non-finite loss), ``run_outputs(b, split)`` (working dtype),
``run_arrays(b)`` / ``set_run_arrays(b, arrays)`` (its parameters in the working dtype, named like refimpl's)
and ``run_params(b)`` (float64 copies). The data are shared by the runs; the targets are held in the
working dtype per split.

Threads (:mod:`dichotomy.kernels.numba.threads`): an engine whose results do not depend on the thread count
(``THREAD_FREE``) runs every call through a :class:`Governor`, which times 1 thread against all of them; the
others fix their count once per run. ``threads=N`` pins it. ``kernel_info()`` says what was chosen.
"""

from __future__ import annotations

import math

import numpy as np

from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba import threads as kthreads

DTYPES = {"float64": np.float64, "float32": np.float32}


class NumbaEngine:
    DTYPES = tuple(DTYPES)
    SCHEDULES = ("constant",)
    OPTIONS = ("threads",)  # what get_backend("numba", ...) may pin for this engine
    THREAD_FREE = True  # results identical at every thread count: the governor may change it call by call

    @classmethod
    def unsupported_data(cls, config, data) -> str | None:
        return None

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None, threads=None):
        self.model, self.runs, self.task = model, runs, data.task
        self.pinned = kthreads.check_threads(threads)
        self.governor = kthreads.Governor(kthreads.ceiling(), self.pinned)
        self.code = klosses.CODES[data.loss]
        self.dtype = DTYPES[dtype]
        self.real = np.dtype(self.dtype).type  # kernel scalars in the working dtype exactly
        self.B, self.step = len(runs), 0
        self.diverged_at = np.full(self.B, -1, np.int64)
        label_type = np.int64 if self.code == 3 else self.dtype
        self.y = {"train": np.ascontiguousarray(data.y_train, dtype=label_type),
                  "test": np.ascontiguousarray(data.y_test, dtype=label_type)}
        self.X = {"train": data.X_train, "test": data.X_test, "probe": probe}

    def advance(self, steps: int) -> None:
        """``steps`` steps of every live run, at the thread count the governor picks (or the pinned one)."""
        self.governor.run(steps, self.advance_steps)

    def kernel_info(self) -> dict:
        """The kernel choices of this engine (recorded with each trajectory and in ``dichotomy bench``)."""
        threads = self.governor.options
        return {"threads": threads[0] if len(threads) == 1 else f"timed per call among {', '.join(map(str, threads))}"}

    def advance_steps(self, steps: int) -> None:
        """:meth:`advance` at the current thread count: each live run in turn (``advance_run``)."""
        for b in np.flatnonzero(self.diverged_at < 0):
            done = self.advance_run(b, steps)
            if done < steps:
                self.diverged_at[b] = self.step + done
        self.step += steps

    def advance_together(self, steps: int, kernel) -> None:
        """:meth:`advance` for a kernel that advances every live run in one call: ``kernel(active, done)`` gets
        ``active`` (B,) bool, which it may clear, and ``done`` (B,) = ``steps``, in which it sets the steps run b
        did before a non-finite loss."""
        live = self.diverged_at < 0
        done = np.full(self.B, steps, np.int64)
        kernel(live.copy(), done)
        stopped = live & (done < steps)
        self.diverged_at[stopped] = self.step + done[stopped]
        self.step += steps

    def outputs(self, split: str) -> list[np.ndarray]:
        return [self.run_outputs(b, split).astype(np.float64) for b in range(self.B)]

    def params(self) -> list[dict[str, np.ndarray]]:
        return [{k: np.array(v, np.float64) for k, v in self.run_arrays(b).items()} for b in range(self.B)]

    def state(self) -> dict[str, np.ndarray]:
        out = {"step": np.array(self.step), "diverged_at": self.diverged_at.copy()}
        out.update({f"run{b}/{k}": np.array(v) for b in range(self.B) for k, v in self.run_arrays(b).items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.step = int(state["step"])
        self.diverged_at = np.array(state["diverged_at"], np.int64)
        for b in range(self.B):
            self.set_run_arrays(b, {k: np.asarray(state[f"run{b}/{k}"], self.dtype) for k in self.run_arrays(b)})

    def metrics(self) -> list[dict[str, float]]:
        """The metrics refimpl.engine.evaluate records, from compiled forward passes and losses."""
        return [self._metrics(b) for b in range(self.B)]

    def _metrics(self, b: int) -> dict[str, float]:
        f_train, f_test = self.run_outputs(b, "train"), self.run_outputs(b, "test")
        if self.code != 3:  # scalar losses: one output per sample, (n,) or (n, 1)
            f_train, f_test = f_train.reshape(-1), f_test.reshape(-1)
        y_train, y_test = self.y["train"], self.y["test"]
        norm = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in self.run_arrays(b).values()))
        out = {"train_loss": float(self._loss(f_train, y_train)),
               "train_log_loss": float(self._log_loss(f_train, y_train)),
               "test_loss": float(self._loss(f_test, y_test)), "param_norm": norm}
        if self.task != "regression":
            out["train_acc"] = float(self._accuracy(f_train, y_train))
            out["test_acc"] = float(self._accuracy(f_test, y_test))
            L = self.model.degree(self.runs[b].config)
            out["margin"] = float(self._margins(f_train, y_train).min()) / norm**L if norm > 0 else 0.0
        return out

    def _loss(self, f, y) -> float:
        """Mean loss of outputs f against y (the gradient written to scratch is discarded)."""
        if self.code == 3:
            return klosses.cross_entropy_value_grad(f, y, np.empty_like(f))
        return klosses.scalar_value_grad(self.code, f, y, np.empty_like(f))

    def _log_loss(self, f, y) -> float:
        if self.code == 3:
            return klosses.log_value_cross_entropy(f, y)
        return klosses.log_value_scalar(self.code, f, y)

    def _accuracy(self, f, y) -> float:
        return klosses.accuracy_cross_entropy(f, y) if self.code == 3 else klosses.accuracy_scalar(f, y)

    def _margins(self, f, y) -> np.ndarray:
        return klosses.margins_cross_entropy(f, y) if self.code == 3 else klosses.margins_scalar(f, y)
