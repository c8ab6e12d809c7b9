"""Gradient descent with coupled weight decay: the one update rule of the package (docs/math.md §5)."""

from __future__ import annotations

import numpy as np


def sgd_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float,
             wd: float) -> dict[str, np.ndarray]:
    """One step of ``p <- p - lr * (g + wd * p)`` for every parameter.

    This is ``torch.optim.SGD(lr=lr, weight_decay=wd)`` without momentum, i.e. gradient descent on
    L(theta) + (wd / 2) ||theta||^2. Returns new arrays; the inputs are not modified.
    """
    return {k: p - lr * (grads[k] + wd * p) for k, p in params.items()}

