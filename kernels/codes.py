"""The loss codes every compiled kernel shares: one table, which the CUDA defines are tested against.

A kernel takes the loss as a small integer (Numba and CUDA branch on it); ``common.cuh`` defines the same numbers
as ``LOSS_*`` macros (tests/kernels/cupy/test_sources.py reads them back).
"""

from __future__ import annotations

from dichotomy.errors import ConfigError

LOSS_CODES = {"logistic": 0, "exponential": 1, "squared": 2, "cross_entropy": 3}
LOGISTIC, EXPONENTIAL, SQUARED, CROSS_ENTROPY = (LOSS_CODES[k] for k in LOSS_CODES)


def code_of(loss: str) -> int:
    """The code of ``loss``; an unknown loss is a one-line ConfigError."""
    try:
        return LOSS_CODES[loss]
    except KeyError:
        raise ConfigError(f"no kernel takes the loss {loss!r}; the kernels take {', '.join(LOSS_CODES)}") from None
