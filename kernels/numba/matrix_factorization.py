"""Matrix factorization for completion, compiled (twin of refimpl/matrix_factorization.py).

Only the observed entries of U U^T - V V^T are formed (2 n d multiply-adds), each fused with its loss
slope, and the update gathers, row by row, the rows the observations link it to (4 n d multiply-adds);
everything fits in L2 at the paper's d = 97, so a step is bound by the loads from L2 and by the two
parallel regions a step needs (the update reads every slope).

- One run: the observations are sorted by row once, so the slopes pass keeps U_i and V_i in L1 across a
  row's observations; on several threads the update splits the rows between them at equal observation
  counts, on one (:func:`advance_serial`) there is no parallel region at all. Each row's update is the same
  arithmetic either way, so the thread count never changes a result and the governor may pick it per call.
- Several runs (:func:`advance_runs`): one thread per run for the whole call, each with the serial step
  (one parallel region per call rather than two per step); the sweep fast path.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba.base import NumbaEngine

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
def update_rows(U, V, U2, V2, indptr, neighbor, obs, g, c, keep, lo, hi):
    """Rows lo..hi-1 of U2 = keep U - c (G + G^T) U and V2 = keep V + c (G + G^T) V.

    Row a gathers the rows b of its observations (a, b) and (b, a) (``indptr``/``neighbor``/``obs``: the
    symmetric adjacency, built once) into a local buffer, which vectorizes where a scatter into U2 would
    not (the compiler cannot rule out U2 aliasing U).
    """
    d = U.shape[1]
    tu, tv = np.empty(d, U.dtype), np.empty(d, U.dtype)
    for a in range(lo, hi):
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


@njit(cache=True, parallel=True)
def update(U, V, U2, V2, indptr, neighbor, obs, g, c, keep, bounds):
    """:func:`update_rows` over the row ranges bounds[t]..bounds[t+1], one per thread."""
    for t in prange(bounds.shape[0] - 1):
        update_rows(U, V, U2, V2, indptr, neighbor, obs, g, c, keep, bounds[t], bounds[t + 1])


@njit(cache=True)
def advance(U, V, U2, V2, rows, cols, y, code, lr, wd, steps, indptr, neighbor, obs, g, bounds):
    """``steps`` GD steps ping-ponging between two buffers.

    The update is theta' = (1 - lr wd) theta - lr grad (the update of refimpl, rounded differently). Returns (steps done
    before a non-finite loss, the last loss, whether the current parameters ended in the second buffer).
    """
    value, swapped = 0.0, False
    keep, c = 1.0 - lr * wd, lr / rows.shape[0]
    for s in range(steps):
        value = slopes(U, V, rows, cols, y, code, g)
        if not math.isfinite(value):
            return s, value, swapped
        update(U, V, U2, V2, indptr, neighbor, obs, g, c, keep, bounds)
        U, U2, V, V2 = U2, U, V2, V
        swapped = not swapped
    return steps, value, swapped


@njit(cache=True)
def advance_serial(U, V, U2, V2, rows, cols, y, code, lr, wd, steps, indptr, neighbor, obs, g):
    """:func:`advance` on one thread, ending with the parameters in U and V; returns the steps done."""
    keep, c = 1.0 - lr * wd, lr / rows.shape[0]
    done, swapped = steps, False
    for s in range(steps):
        if not math.isfinite(slopes(U, V, rows, cols, y, code, g)):
            done = s
            break
        update_rows(U, V, U2, V2, indptr, neighbor, obs, g, c, keep, 0, U.shape[0])
        U, U2, V, V2 = U2, U, V2, V
        swapped = not swapped
    if swapped:  # U is the second buffer now
        U2[...] = U
        V2[...] = V
    return done


@njit(cache=True, parallel=True)
def advance_runs(U, V, U2, V2, rows, cols, y, code, lr, wd, steps, indptr, neighbor, obs, g, active, done):
    """Runs b with active[b] advance ``steps`` steps each, one run per thread.

    U, V are (B, d, r) stacks; lr, wd are (B,). done[b] = the steps run b did before a non-finite loss.
    """
    for b in prange(U.shape[0]):
        if active[b]:
            done[b] = advance_serial(U[b], V[b], U2[b], V2[b], rows, cols, y, code, lr[b], wd[b], steps, indptr,
                                     neighbor, obs, g[b])


def balanced(indptr, parts):
    """Row bounds (parts + 1,) splitting the rows into ranges with about equal observation counts."""
    m = len(indptr) - 1
    cuts = np.searchsorted(indptr, np.arange(1, parts) * indptr[-1] / parts)
    return np.concatenate([[0], np.minimum(cuts, m), [m]]).astype(np.int64)


class MatrixFactorizationEngine(NumbaEngine):
    """B completions on one dataset; they share the observations (sorted by row) and their adjacency.

    One run advances with the two-region parallel step; several runs of one shape advance one per thread
    (:func:`advance_runs`).
    """

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None, threads=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule, threads=threads)
        # the current parameters (B, d, r) and the buffers the next step writes
        self.U = np.stack([np.asarray(r.params["U"], self.dtype) for r in runs])
        self.V = np.stack([np.asarray(r.params["V"], self.dtype) for r in runs])
        self.U2, self.V2 = np.empty_like(self.U), np.empty_like(self.V)
        self.pairs = {k: None if X is None else (np.ascontiguousarray(X[:, 0]), np.ascontiguousarray(X[:, 1]))
                      for k, X in self.X.items()}
        rows, cols = self.pairs["train"]
        order = np.lexsort((cols, rows))  # training order: by row, so U_i and V_i stay in L1
        self.train = (np.ascontiguousarray(rows[order]), np.ascontiguousarray(cols[order]),
                      np.ascontiguousarray(self.y["train"][order]))
        rows, cols = self.train[:2]
        n, d = len(rows), runs[0].config.d
        ends, others = np.concatenate([rows, cols]), np.concatenate([cols, rows])
        by_end = np.argsort(ends, kind="stable")
        self.adjacency = (np.searchsorted(ends[by_end], np.arange(d + 1)), others[by_end],
                          np.concatenate([np.arange(n), np.arange(n)])[by_end])
        self.bounds = {}  # thread count -> row bounds
        self.g = np.empty((self.B, n), self.dtype)
        self.lr = np.array([r.lr for r in runs], self.dtype)
        self.wd = np.array([r.wd for r in runs], self.dtype)

    def advance_steps(self, steps: int) -> None:
        if self.B == 1:
            return super().advance_steps(steps)
        self.advance_together(steps, lambda active, done: advance_runs(
            self.U, self.V, self.U2, self.V2, *self.train, self.code, self.lr, self.wd, steps, *self.adjacency,
            self.g, active, done))

    def advance_run(self, b, steps):
        U, V, U2, V2 = self.U[b], self.V[b], self.U2[b], self.V2[b]
        threads = numba.get_num_threads()
        if threads == 1:
            return advance_serial(U, V, U2, V2, *self.train, self.code, self.lr[b], self.wd[b], steps,
                                  *self.adjacency, self.g[b])
        if threads not in self.bounds:
            self.bounds[threads] = balanced(self.adjacency[0], threads)
        done, _, swapped = advance(U, V, U2, V2, *self.train, self.code, self.lr[b], self.wd[b], steps,
                                   *self.adjacency, self.g[b], self.bounds[threads])
        if swapped:
            U[...], V[...] = U2, V2
        return done

    def run_outputs(self, b, split):
        rows, cols = self.pairs[split]
        f = np.empty(len(rows), self.dtype)
        forward(self.U[b], self.V[b], rows, cols, f)
        return f

    def run_arrays(self, b):
        return {"U": self.U[b], "V": self.V[b]}

    def set_run_arrays(self, b, arrays):
        self.U[b], self.V[b] = arrays["U"], arrays["V"]
