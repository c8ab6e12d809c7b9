"""The numpy backend: the float64 oracle's engine, its BLAS thread count fixed per run (kernels/blas.py).

Every number is :class:`dichotomy.refimpl.engine.ReferenceEngine`'s; only NumPy's BLAS threads are set around
its calls, so that on a busy machine its OpenBLAS does not spin against the neighbours (docs/benchmarks.md).
"""

from __future__ import annotations

from dichotomy.kernels.blas import BlasPerRun
from dichotomy.refimpl.engine import ReferenceEngine


class NumpyEngine(BlasPerRun, ReferenceEngine):
    """:class:`ReferenceEngine` with a BLAS count per run (pin it with ``OPENBLAS_NUM_THREADS``)."""

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
        self.pinned = None
        self.init_blas()

    def advance_unlimited(self, steps: int) -> None:
        ReferenceEngine.advance(self, steps)

    def blas_size(self) -> str:
        shapes = sorted({tuple((k, v.shape) for k, v in p.items()) for p in self.theta})
        kind = "loss-normalized" if self.schedule is not None else "constant"
        return f"n={len(self.data.y_train)} {shapes} B={self.B} {kind}"
