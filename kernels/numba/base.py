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

import numpy as np

from dichotomy.kernels import codes
from dichotomy.kernels.numba import threads as kthreads
from dichotomy.refimpl import metrics

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
        self.code = codes.code_of(data.loss)
        self.dtype = DTYPES[dtype]
        self.real = np.dtype(self.dtype).type  # kernel scalars in the working dtype exactly
        self.B, self.step = len(runs), 0
        self.diverged_at = np.full(self.B, -1, np.int64)
        label_type = np.int64 if self.code == codes.CROSS_ENTROPY else self.dtype
        self.y = {"train": np.ascontiguousarray(data.y_train, dtype=label_type),
                  "test": np.ascontiguousarray(data.y_test, dtype=label_type)}
        self.y_metric = {"train": data.y_train, "test": data.y_test}  # float64 targets (int64 labels): the metrics'
        self.loss = data.loss
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
        """:meth:`advance` for a kernel that advances every live run in one call.

        ``kernel(active, done)`` gets ``active`` (B,) bool, which it may clear, and ``done`` (B,) = ``steps``, in which
        it sets the steps run b did before a non-finite loss.
        """
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
        """Per run, :func:`dichotomy.refimpl.metrics.evaluate` of its compiled outputs and its parameters."""
        return [metrics.evaluate(np, self.task, self.loss, self.model.degree(run.config), self.run_outputs(b, "train"),
                                 self.y_metric["train"], self.run_outputs(b, "test"), self.y_metric["test"],
                                 self.run_arrays(b).values()) for b, run in enumerate(self.runs)]
