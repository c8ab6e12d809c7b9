"""What every Numba model engine shares: targets per split in the working dtype, and the loss of outputs."""

from __future__ import annotations

import numpy as np

from dichotomy.kernels.numba import losses as klosses


class Engine:
    """Holds a run's data in kernel layout. Subclasses add ``advance``, ``outputs``, ``params``, ``norm``."""

    def __init__(self, data, dtype, probe):
        self.code = klosses.CODES[data.loss]
        self.dtype = dtype
        label_type = np.int64 if self.code == 3 else dtype
        self.y = {"train": np.ascontiguousarray(data.y_train, dtype=label_type),
                  "test": np.ascontiguousarray(data.y_test, dtype=label_type)}
        self.X = {"train": data.X_train, "test": data.X_test, "probe": probe}

    def targets(self, split: str) -> np.ndarray:
        return self.y[split]

    def loss(self, f: np.ndarray, y: np.ndarray) -> float:
        """Mean loss of outputs f against y (the gradient written to scratch is discarded)."""
        if self.code == 3:
            return klosses.cross_entropy_value_grad(f, y, np.empty_like(f))
        return klosses.scalar_value_grad(self.code, f, y, np.empty_like(f))

    def log_loss(self, f, y) -> float:
        if self.code == 3:
            return klosses.log_value_cross_entropy(f, y)
        return klosses.log_value_scalar(self.code, f, y)

    def accuracy(self, f, y) -> float:
        return klosses.accuracy_cross_entropy(f, y) if self.code == 3 else klosses.accuracy_scalar(f, y)

    def min_margin(self, f, y) -> float:
        m = klosses.margins_cross_entropy(f, y) if self.code == 3 else klosses.margins_scalar(f, y)
        return float(m.min())
