"""Matrix factorization for completion, compiled (twin of refimpl/matrix_factorization.py).

Only the observed entries of U U^T - V V^T are formed (2 n d multiply-adds), each fused with its loss
slope, and the update gathers, row by row, the rows the observations link it to (4 n d multiply-adds);
everything fits in L1/L2 at the paper's d = 97.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba.engine import NumbaEngine

# Reassociation lets the d-long dot products use SIMD lanes (their rounding differs from NumPy's pairwise
# sums by ~1e-16 relative); no-NaN / no-inf assumptions stay off, so divergence is still detected.
FASTMATH = {"reassoc", "contract"}


@njit(cache=True, fastmath=FASTMATH, inline="always")
def entry(U, V, i, j):
    """W_ij = <U_i, U_j> - <V_i, V_j>, reassociated so the dot products vectorize."""
    su, sv = 0.0, 0.0
    for r in range(U.shape[1]):
        su += U[i, r] * U[j, r]
        sv += V[i, r] * V[j, r]
    return su - sv


@njit(cache=True, fastmath=FASTMATH)
def forward(U, V, rows, cols, f):
    """f_k = W_ij for (i, j) = (rows_k, cols_k)."""
    for k in range(rows.shape[0]):
        f[k] = entry(U, V, rows[k], cols[k])


@njit(cache=True, fastmath=FASTMATH)
def slopes(U, V, rows, cols, y, code, g):
    """Forward pass fused with the loss: g_k = d loss_k / d f_k; returns the mean loss."""
    total = 0.0
    for k in range(rows.shape[0]):
        value, g[k] = klosses.point(code, entry(U, V, rows[k], cols[k]), y[k])
        total += value
    return total / rows.shape[0]


@njit(cache=True, fastmath=FASTMATH)
def update(U, V, U2, V2, indptr, neighbor, obs, g, c, keep):
    """U2 = keep U - c (G + G^T) U and V2 = keep V + c (G + G^T) V, one row at a time.

    Row a gathers the rows b of its observations (a, b) and (b, a) (``indptr``/``neighbor``/``obs``: the
    symmetric adjacency, built once) into a local buffer, which vectorizes where a scatter into U2 would
    not (the compiler cannot rule out U2 aliasing U).
    """
    m, d = U.shape
    tu, tv = np.empty(d, U.dtype), np.empty(d, U.dtype)
    for a in range(m):
        for r in range(d):
            tu[r] = keep * U[a, r]
            tv[r] = keep * V[a, r]
        for e in range(indptr[a], indptr[a + 1]):
            b, s = neighbor[e], c * g[obs[e]]
            for r in range(d):
                tu[r] -= s * U[b, r]
                tv[r] += s * V[b, r]
        for r in range(d):
            U2[a, r] = tu[r]
            V2[a, r] = tv[r]


@njit(cache=True)
def advance(U, V, U2, V2, rows, cols, y, code, lr, wd, steps, indptr, neighbor, obs, g):
    """``steps`` GD steps ping-ponging between two buffers: theta' = (1 - lr wd) theta - lr grad (the update
    of refimpl, rounded differently). Returns (steps done before a non-finite loss, the last loss, whether
    the current parameters ended in the second buffer)."""
    value, swapped = 0.0, False
    keep, c = 1.0 - lr * wd, lr / rows.shape[0]
    for s in range(steps):
        value = slopes(U, V, rows, cols, y, code, g)
        if not math.isfinite(value):
            return s, value, swapped
        update(U, V, U2, V2, indptr, neighbor, obs, g, c, keep)
        U, U2, V, V2 = U2, U, V2, V
        swapped = not swapped
    return steps, value, swapped


class MatrixFactorizationEngine(NumbaEngine):
    """B completions on one dataset, advanced one after another; they share the observations' adjacency."""

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
        # (U, V, U2, V2) per run: the current parameters and the buffers the next step writes
        self.buffers = [[np.array(r.params[k], self.dtype) for k in ("U", "V", "U", "V")] for r in runs]
        self.pairs = {k: None if X is None else (np.ascontiguousarray(X[:, 0]), np.ascontiguousarray(X[:, 1]))
                      for k, X in self.X.items()}
        rows, cols = self.pairs["train"]
        n, d = len(rows), runs[0].config.d
        ends, others = np.concatenate([rows, cols]), np.concatenate([cols, rows])
        order = np.argsort(ends, kind="stable")
        self.adjacency = (np.searchsorted(ends[order], np.arange(d + 1)), others[order],
                          np.concatenate([np.arange(n), np.arange(n)])[order])
        self.g = np.empty(n, self.dtype)

    def advance_run(self, b, steps):
        rows, cols = self.pairs["train"]
        U, V, U2, V2 = self.buffers[b]
        run = self.runs[b]
        done, _, swapped = advance(U, V, U2, V2, rows, cols, self.y["train"], self.code, self.real(run.lr),
                                   self.real(run.wd), steps, *self.adjacency, self.g)
        if swapped:
            self.buffers[b] = [U2, V2, U, V]
        return done

    def run_outputs(self, b, split):
        rows, cols = self.pairs[split]
        f = np.empty(len(rows), self.dtype)
        forward(self.buffers[b][0], self.buffers[b][1], rows, cols, f)
        return f

    def run_arrays(self, b):
        return {"U": self.buffers[b][0], "V": self.buffers[b][1]}

    def set_run_arrays(self, b, arrays):
        self.buffers[b][0][...], self.buffers[b][1][...] = arrays["U"], arrays["V"]
