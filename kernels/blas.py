"""BLAS thread counts: fixed for a run, chosen by a timed trial on this host (docs/user-guide.md, "Threads").

The engines whose products go to BLAS (the numba ReLU MLP through SciPy's OpenBLAS, the numpy backend through
NumPy's) cannot let the count follow the load call by call: OpenBLAS's long reductions (a weight gradient, a sum
over the samples) round differently at 1 and 2 threads, so the count is part of a run's result. And its threads
spin while they wait, so on a busy machine two of them can cost 2-40x (docs/benchmarks.md). A run therefore
takes one count: pinned, or all cores only where a timed trial on this host and size found them
:data:`BlasPerRun.MARGIN` faster than one (cached by :mod:`dichotomy.kernels.tuning`); it is saved in the run's
state (a resumed run keeps it) and set around every call into the engine with ``threadpoolctl``.
"""

from __future__ import annotations

import numpy as np

from dichotomy.kernels import tuning
from dichotomy.kernels.cores import available_cores


class Blas:
    """The BLAS libraries in this process (through ``threadpoolctl``), whose thread count an engine sets."""

    def __init__(self):
        import scipy.linalg.cython_blas  # noqa: F401  (loaded before we look: it is the BLAS Numba calls)
        from threadpoolctl import ThreadpoolController

        self.controller = ThreadpoolController().select(user_api="blas")

    def info_line(self) -> str:
        """The BLAS libraries found, e.g. ``openblas 0.3.30 (pthreads)``."""
        return ", ".join(sorted({f"{i['internal_api']} {i.get('version')} ({i.get('threading_layer')})"
                                 for i in self.controller.info()})) or "none found"

    def most(self) -> int:
        """The most threads a run may take: the available cores, within the libraries' own setting.

        A user's ``OPENBLAS_NUM_THREADS`` is a ceiling.
        """
        own = [i["num_threads"] for i in self.controller.info() if i.get("num_threads")]
        return max(1, min(available_cores(), max(own, default=1)))

    def limited(self, n: int):
        """A context in which every BLAS library found uses ``n`` threads."""
        return self.controller.limit(limits=n)


class BlasPerRun:
    """Mixin for an engine whose BLAS count is fixed per run (see the module docstring).

    The engine provides ``advance_unlimited(steps)`` (its own advance) and ``blas_size()`` (the shapes the
    count is cached under); it sets ``self.pinned`` (None: choose) before calling :meth:`init_blas`.
    """

    MARGIN = 0.8  # more BLAS threads only when they save 20%: their spinning threads cost most on a busy machine

    def init_blas(self) -> None:
        self.blas = Blas()
        self.threads = self.pinned if self.pinned is not None else 1 if self.blas.most() == 1 else None

    def advance(self, steps: int) -> None:
        if self.threads is None:
            self.threads = tuning.choose(f"{self.model.NAME} BLAS threads", self.blas_size(), (1, self.blas.most()),
                                         self._trial, margin=self.MARGIN)
        with self.blas.limited(self.threads):
            self.advance_unlimited(steps)

    def _trial(self, threads: int) -> float:
        """Seconds per step at ``threads`` (the engine's state is put back afterwards)."""
        saved = self.state()
        try:
            with self.blas.limited(threads), np.errstate(over="ignore", invalid="ignore"):
                return tuning.time_per_step(self.advance_unlimited)
        finally:
            self.load_state(saved)

    def kernel_info(self) -> dict:
        return {"threads": self.threads or "chosen at the first step", "blas": self.blas.info_line()}

    def outputs(self, split):
        with self.blas.limited(self.threads or 1):
            return super().outputs(split)

    def metrics(self):
        with self.blas.limited(self.threads or 1):
            return super().metrics()

    def state(self):
        out = super().state()
        if self.threads is not None:
            out["threads"] = np.array(self.threads)
        return out

    def load_state(self, state):
        super().load_state(state)
        if "threads" in state and self.pinned is None:  # a run resumes at the count it started with
            self.threads = int(state["threads"])
