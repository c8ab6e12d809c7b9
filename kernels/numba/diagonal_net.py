"""Diagonal linear net, compiled (twin of refimpl/diagonal_net.py).

+-1 data stay int8 (8x fewer bytes than float64, exact). A step reads the data twice, both times as dot
products over contiguous rows (which vectorize): f = X w over the rows of X, and X^T g over the rows of a
transposed copy of X kept for the purpose. Each thread owns whole rows, so no accumulator is shared.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from kernels.numba import losses as klosses
from kernels.numba.engine import Engine

# Reassociation lets the int8 x float products vectorize; no-NaN / no-inf assumptions stay off, so
# divergence is still detected. Sums differ from NumPy's by rounding (~1e-16 relative).
FASTMATH = {"reassoc", "contract"}


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def matvec(X, w, f):
    """f = X w for X (n, d) of any numeric dtype."""
    for i in prange(X.shape[0]):
        s = 0.0
        for j in range(X.shape[1]):
            s += X[i, j] * w[j]
        f[i] = s


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def rmatvec(XT, g, out):
    """out = X^T g, given XT = X^T as a C-contiguous (d, n) array (about 5x faster than a column walk)."""
    for j in prange(XT.shape[0]):
        s = 0.0
        for i in range(XT.shape[1]):
            s += XT[j, i] * g[i]
        out[j] = s


@njit(cache=True)
def weights(u, v, L, w):
    for j in range(u.shape[0]):
        w[j] = u[j] ** L - v[j] ** L


@njit(cache=True)
def advance(u, v, L, X, XT, y, code, lr, wd, steps, w, f, g, gw):
    """``steps`` GD steps in place; returns (steps done before a non-finite loss, the last loss)."""
    value = 0.0
    for s in range(steps):
        weights(u, v, L, w)
        matvec(X, w, f)
        value = klosses.scalar_value_grad(code, f, y, g)
        if not math.isfinite(value):
            return s, value
        rmatvec(XT, g, gw)
        for j in range(u.shape[0]):
            du = L * u[j] ** (L - 1) * gw[j]
            dv = -L * v[j] ** (L - 1) * gw[j]
            u[j] -= lr * (du + wd * u[j])
            v[j] -= lr * (dv + wd * v[j])
    return steps, value


class DiagonalNetEngine(Engine):
    def __init__(self, config, params, data, dtype, probe):
        super().__init__(data, dtype, probe)
        self.L = config.L
        self.u, self.v = np.array(params["u"], dtype=dtype), np.array(params["v"], dtype=dtype)
        # +-1 integer data are kept as int8; anything else is converted once to the working dtype.
        self.X = {k: None if X is None else np.ascontiguousarray(X if X.dtype == np.int8 else X.astype(dtype))
                  for k, X in self.X.items()}
        self.XT = np.ascontiguousarray(self.X["train"].T)
        n, d = self.X["train"].shape
        self.w, self.gw = np.empty(d, dtype), np.empty(d, dtype)
        self.f, self.g = np.empty(n, dtype), np.empty(n, dtype)

    def advance(self, steps, lr, wd):
        cast = self.dtype(1).dtype.type
        return advance(self.u, self.v, self.L, self.X["train"], self.XT, self.y["train"], self.code, cast(lr),
                       cast(wd), steps, self.w, self.f, self.g, self.gw)

    def outputs(self, split):
        X = self.X[split]
        weights(self.u, self.v, self.L, self.w)
        f = np.empty(X.shape[0], self.dtype)
        matvec(X, self.w, f)
        return f

    def params(self):
        return {"u": self.u.astype(np.float64), "v": self.v.astype(np.float64)}

    def norm(self):
        u, v = self.u.astype(np.float64), self.v.astype(np.float64)
        return float(math.sqrt(u @ u + v @ v))
