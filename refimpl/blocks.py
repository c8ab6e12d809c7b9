"""Products with exact small-integer matrices (+-1 data stored as int8), formed in float64 a block of rows at a time.

An int8 matrix is never converted whole: each block of rows (~16 MiB of float64) is converted, used and
dropped. Float64 (and complex) matrices are used as they are. Shared by the diagonal net and the limits.
"""

from __future__ import annotations

import numpy as np

BLOCK_ELEMENTS = 1 << 21  # 16 MiB of float64 per converted block


def float_rows(X: np.ndarray, dtype=np.float64):
    """Yield (start, block of rows as float) of X; None if X is float64 or complex already (use it directly)."""
    if X.dtype == np.float64 or X.dtype.kind == "c":
        return None
    rows = max(1, BLOCK_ELEMENTS // max(X.shape[1], 1))
    return ((s, X[s:s + rows].astype(np.result_type(dtype, np.float64))) for s in range(0, X.shape[0], rows))


def matvec(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """X w, shape (n,)."""
    blocks = float_rows(X, w.dtype)
    return X @ w if blocks is None else np.concatenate([B @ w for _, B in blocks])


def rmatvec(X: np.ndarray, g: np.ndarray) -> np.ndarray:
    """X^T g, shape (d,)."""
    blocks = float_rows(X, g.dtype)
    return X.T @ g if blocks is None else sum(g[s:s + len(B)] @ B for s, B in blocks)


def gram(X1: np.ndarray, X2: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """X1 diag(scale) X2^T, shape (n1, n2): X2 converted once, X1 a block of rows at a time."""
    B2 = np.asarray(X2, dtype=np.float64) if scale is None else np.asarray(X2, dtype=np.float64) * scale
    blocks = float_rows(X1)
    return X1 @ B2.T if blocks is None else np.vstack([B @ B2.T for _, B in blocks])
