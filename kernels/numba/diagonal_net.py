"""Diagonal linear net, compiled (twin of refimpl/diagonal_net.py).

+-1 data stay int8 (8x fewer bytes than float64, exact). A step reads the data twice, both times as dot
products over contiguous rows (which vectorize): f = X w over the rows of X, and X^T g over the rows of a
transposed copy of X kept for the purpose. Each thread owns whole rows, so no accumulator is shared.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba.engine import Engine

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


class DiagonalNetEngine(Engine):
    def __init__(self, config, params, data, dtype, probe):
        super().__init__(data, dtype, probe)
        self.L = config.L
        self.u, self.v = np.array(params["u"], dtype=dtype), np.array(params["v"], dtype=dtype)
        # +-1 integer data are kept as int8; anything else is converted to the working dtype (no copy when it
        # already is: a batch's engines share the dataset's arrays).
        self.X = {k: None if X is None else np.ascontiguousarray(X, dtype=np.int8 if X.dtype == np.int8 else dtype)
                  for k, X in self.X.items()}
        self.XT = None  # the transposed copy, made on the first advance (a batch never needs one per run)
        n, d = self.X["train"].shape
        self.w, self.gw = np.empty(d, dtype), np.empty(d, dtype)
        self.f, self.g = np.empty(n, dtype), np.empty(n, dtype)

    def advance(self, steps, lr, wd):
        if self.XT is None:
            self.XT = np.ascontiguousarray(self.X["train"].T)
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


@njit(cache=True)
def advance_batch(U, V, L, X, y, code, lr, wd, steps, active, done, values):
    """B runs (rows of U, V) on one dataset: the two products are GEMMs, one pass over X for all runs.

    A run whose loss stops being finite is frozen (``active`` cleared, ``done`` = its step); the others go on.
    """
    B, d = U.shape
    W = np.empty((B, d))
    G = np.zeros((B, X.shape[0]))
    for s in range(steps):
        for b in range(B):
            for j in range(d):
                W[b, j] = power(U[b, j], L) - power(V[b, j], L)
        F = np.dot(X, W.T)
        for b in range(B):
            if active[b]:
                values[b] = klosses.scalar_value_grad(code, F[:, b], y, G[b])
                if not math.isfinite(values[b]):
                    active[b], done[b] = False, s
                    G[b] = 0.0
        GW = np.dot(G, X)
        for b in range(B):
            if active[b]:
                for j in range(d):
                    du = L * power(U[b, j], L - 1) * GW[b, j]
                    dv = -L * power(V[b, j], L - 1) * GW[b, j]
                    U[b, j] -= lr[b] * (du + wd[b] * U[b, j])
                    V[b, j] -= lr[b] * (dv + wd[b] * V[b, j])


class DiagonalNetBatch:
    """B diagonal nets on one dataset (float64): data converted once, both products as BLAS GEMMs."""

    blas_threads = 1  # B-column GEMMs: one thread is as fast, and no spinning workers stall the evaluation

    def __init__(self, configs, params, data, probe):
        self.engines = [DiagonalNetEngine(c, p, data, np.float64, probe) for c, p in zip(configs, params, strict=True)]
        self.L = configs[0].L
        self.X = np.ascontiguousarray(data.X_train, dtype=np.float64)
        self.U = np.stack([e.u for e in self.engines])
        self.V = np.stack([e.v for e in self.engines])
        for b, e in enumerate(self.engines):  # each run's parameters are a row of the batch's, not a copy
            e.u, e.v = self.U[b], self.V[b]

    def advance(self, steps, lr, wd, active):
        done = np.where(active, steps, 0)
        first = self.engines[0]
        advance_batch(self.U, self.V, self.L, self.X, first.y["train"], first.code, lr, wd, steps, active, done,
                      np.zeros(len(self.engines)))
        return done
