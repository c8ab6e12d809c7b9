"""Diagonal linear net, compiled (twin of refimpl/diagonal_net.py).

+-1 data stay int8 (8x fewer bytes than float64, exact). A step reads the data twice, both times as dot
products over contiguous rows (which vectorize): f = X w over the rows of X, and X^T g over the rows of a
transposed copy of X kept for the purpose. Each thread owns whole rows, so no accumulator is shared.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from threadpoolctl import threadpool_limits

from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba.engine import NumbaEngine

# Reassociation lets the int8 x float products vectorize; no-NaN / no-inf assumptions stay off, so
# divergence is still detected. Sums differ from NumPy's by rounding (~1e-16 relative).
FASTMATH = {"reassoc", "contract"}


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def matvec(X, w, f):
    """f = X w for X (n, d) of any numeric dtype; with X^T stored C-contiguous, also X^T g."""
    for i in prange(X.shape[0]):
        s = 0.0
        for j in range(X.shape[1]):
            s += X[i, j] * w[j]
        f[i] = s


@njit(cache=True, inline="always")
def power(x, k):
    """x^k for a small integer k >= 0 by multiplication (x ** k with an integer k calls libm's pow)."""
    out = 1.0
    for _ in range(k):
        out *= x
    return out


@njit(cache=True)
def weights(u, v, L, w):
    for j in range(u.shape[0]):
        w[j] = power(u[j], L) - power(v[j], L)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def advance(u, v, L, X, XT, y, code, lr, wd, steps, w, f, g, gw):
    """``steps`` GD steps in place; returns (steps done before a non-finite loss, the last loss).

    The two products are written out here rather than calling :func:`matvec`: a cached function that
    calls another cached ``parallel=True`` function segfaults when loaded from the cache in a later process
    (numba#8578), so every parallel loop lives in the function that is cached.
    """
    value = 0.0
    n, d = X.shape
    for s in range(steps):
        weights(u, v, L, w)
        for i in prange(n):  # f = X w
            acc = 0.0
            for j in range(d):
                acc += X[i, j] * w[j]
            f[i] = acc
        value = klosses.scalar_value_grad(code, f, y, g)
        if not math.isfinite(value):
            return s, value
        for j in prange(d):  # X^T g, over the rows of the transposed copy
            acc = 0.0
            for i in range(n):
                acc += XT[j, i] * g[i]
            gw[j] = acc
        for j in range(d):
            du = L * power(u[j], L - 1) * gw[j]
            dv = -L * power(v[j], L - 1) * gw[j]
            u[j] -= lr * (du + wd * u[j])
            v[j] -= lr * (dv + wd * v[j])
    return steps, value


class DiagonalNetEngine(NumbaEngine):
    """B diagonal nets on one dataset; run b's u, v are row b of (B, d) arrays. One run: the fused loop above
    on int8 data. Several: :func:`advance_batch`, whose two products are GEMMs (one pass over X for all)."""

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
        self.L = np.array([r.config.L for r in runs], np.int64)
        self.lr = np.array([r.lr for r in runs], self.dtype)
        self.wd = np.array([r.wd for r in runs], self.dtype)
        self.U = np.array([r.params["u"] for r in runs], self.dtype)
        self.V = np.array([r.params["v"] for r in runs], self.dtype)
        # +-1 integer data are kept as int8; anything else is converted to the working dtype (no copy when it
        # already is).
        self.X = {k: None if X is None else np.ascontiguousarray(X, dtype=np.int8 if X.dtype == np.int8 else self.dtype)
                  for k, X in self.X.items()}
        self.XT = self.Xf = None  # made on first use: the transposed copy (one run), the float copy (a batch)
        n, d = self.X["train"].shape
        self.w, self.gw = np.empty(d, self.dtype), np.empty(d, self.dtype)
        self.f, self.g = np.empty(n, self.dtype), np.empty(n, self.dtype)

    def advance(self, steps):
        if self.B == 1:
            return super().advance(steps)
        if self.Xf is None:
            self.Xf = np.ascontiguousarray(self.X["train"], dtype=self.dtype)
        active = self.diverged_at < 0
        done = np.where(active, steps, 0)
        # B-column GEMMs gain nothing from BLAS threads, and OpenBLAS workers spinning after each GEMM starve
        # the parallel evaluation loops (4x slower on 2 cores): one BLAS thread here.
        with threadpool_limits(1, user_api="blas"):
            advance_batch(self.U, self.V, self.L, self.Xf, self.y["train"], self.code, self.lr, self.wd, steps,
                          active, done)
        for b in np.flatnonzero((self.diverged_at < 0) & (done < steps)):
            self.diverged_at[b] = self.step + done[b]
        self.step += steps

    def advance_run(self, b, steps):
        if self.XT is None:
            self.XT = np.ascontiguousarray(self.X["train"].T)
        return advance(self.U[b], self.V[b], int(self.L[b]), self.X["train"], self.XT, self.y["train"], self.code,
                       self.lr[b], self.wd[b], steps, self.w, self.f, self.g, self.gw)[0]

    def run_outputs(self, b, split):
        X = self.X[split]
        weights(self.U[b], self.V[b], int(self.L[b]), self.w)
        f = np.empty(X.shape[0], self.dtype)
        matvec(X, self.w, f)
        return f

    def run_arrays(self, b):
        return {"u": self.U[b], "v": self.V[b]}

    def set_run_arrays(self, b, arrays):
        self.U[b], self.V[b] = arrays["u"], arrays["v"]


@njit(cache=True)
def advance_batch(U, V, L, X, y, code, lr, wd, steps, active, done):
    """B runs (rows of U, V; depth L[b], rates lr[b], wd[b]) on one dataset: the two products are GEMMs.

    A run whose loss stops being finite is frozen (``active`` cleared, ``done[b]`` = steps it did); the others
    go on.
    """
    B, d = U.shape
    W = np.empty((B, d), U.dtype)
    G = np.zeros((B, X.shape[0]), U.dtype)
    for s in range(steps):
        for b in range(B):
            for j in range(d):
                W[b, j] = power(U[b, j], L[b]) - power(V[b, j], L[b])
        F = np.dot(X, W.T)
        for b in range(B):
            if active[b]:
                value = klosses.scalar_value_grad(code, F[:, b], y, G[b])
                if not math.isfinite(value):
                    active[b], done[b] = False, s
                    G[b] = 0.0
        GW = np.dot(G, X)
        for b in range(B):
            if active[b]:
                for j in range(d):
                    du = L[b] * power(U[b, j], L[b] - 1) * GW[b, j]
                    dv = -L[b] * power(V[b, j], L[b] - 1) * GW[b, j]
                    U[b, j] -= lr[b] * (du + wd[b] * U[b, j])
                    V[b, j] -= lr[b] * (dv + wd[b] * V[b, j])
