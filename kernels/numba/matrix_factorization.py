"""Matrix factorization for completion, compiled (twin of refimpl/matrix_factorization.py).

Only the observed entries of U U^T - V V^T are formed (2 n d multiply-adds), and the gradient is scattered
into the rows the observations touch; everything fits in L1/L2 at the paper's d = 97.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.numba import losses as klosses
from kernels.numba.engine import Engine

# Reassociation lets the d-long dot products use SIMD lanes (their rounding differs from NumPy's pairwise
# sums by ~1e-16 relative); no-NaN / no-inf assumptions stay off, so divergence is still detected.
FASTMATH = {"reassoc", "contract"}


@njit(cache=True, fastmath=FASTMATH)
def forward(U, V, I, J, f):
    """f_k = <U_i, U_j> - <V_i, V_j> for (i, j) = (I_k, J_k); reassociated so the dot products vectorize."""
    d = U.shape[1]
    for k in range(I.shape[0]):
        i, j = I[k], J[k]
        su, sv = 0.0, 0.0
        for r in range(d):
            su += U[i, r] * U[j, r]
            sv += V[i, r] * V[j, r]
        f[k] = su - sv


@njit(cache=True)
def advance(U, V, I, J, y, code, lr, wd, steps, f, g, dU, dV):
    """``steps`` GD steps in place; returns (steps done before a non-finite loss, the last loss)."""
    value = 0.0
    d = U.shape[1]
    for s in range(steps):
        forward(U, V, I, J, f)
        value = klosses.scalar_value_grad(code, f, y, g)
        if not math.isfinite(value):
            return s, value
        dU[:] = 0.0
        dV[:] = 0.0
        for k in range(I.shape[0]):
            i, j, gk = I[k], J[k], g[k]
            for r in range(d):
                dU[i, r] += gk * U[j, r]
                dU[j, r] += gk * U[i, r]
                dV[i, r] -= gk * V[j, r]
                dV[j, r] -= gk * V[i, r]
        for i in range(d):
            for r in range(d):
                U[i, r] -= lr * (dU[i, r] + wd * U[i, r])
                V[i, r] -= lr * (dV[i, r] + wd * V[i, r])
    return steps, value


class MatrixFactorizationEngine(Engine):
    def __init__(self, config, params, data, dtype, probe):
        super().__init__(data, dtype, probe)
        self.U = np.array(params["U"], dtype=dtype)
        self.V = np.array(params["V"], dtype=dtype)
        self.pairs = {k: None if X is None else (np.ascontiguousarray(X[:, 0]), np.ascontiguousarray(X[:, 1]))
                      for k, X in self.X.items()}
        n = len(self.y["train"])
        self.f, self.g = np.empty(n, dtype), np.empty(n, dtype)
        self.dU, self.dV = np.empty_like(self.U), np.empty_like(self.V)

    def advance(self, steps, lr, wd):
        I, J = self.pairs["train"]
        cast = self.dtype(1).dtype.type
        return advance(self.U, self.V, I, J, self.y["train"], self.code, cast(lr), cast(wd), steps, self.f,
                       self.g, self.dU, self.dV)

    def outputs(self, split):
        I, J = self.pairs[split]
        f = np.empty(len(I), self.dtype)
        forward(self.U, self.V, I, J, f)
        return f

    def params(self):
        return {"U": self.U.astype(np.float64), "V": self.V.astype(np.float64)}

    def norm(self):
        return float(math.sqrt(np.sum(self.U.astype(np.float64) ** 2) + np.sum(self.V.astype(np.float64) ** 2)))
