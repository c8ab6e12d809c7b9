"""Diagonal linear net, compiled (twin of refimpl/diagonal_net.py).

One run reads X once per step, and carries the outputs X w from one step to the next: w_{s+1, j} depends
only on (X^T g_s)_j, u_j and v_j, so a piece of X, while in cache, serves X^T g for its coordinates, their
update, and their share of the next step's outputs (docs/benchmarks.md).

- +-1 data (:func:`advance_signs`) are held as bits, 64x fewer bytes than float64, and both products are
  formed from tables of signed sums of 8 values (the "four Russians" method): lookups and additions instead of
  multiply-adds.
- Other data, and several runs (:func:`advance`), are held as contiguous column blocks, int8 when they are
  integers; each block, converted once, serves every run while it is in cache.

Sums are reassociated, so results differ from NumPy's by rounding (~1e-16 relative); the order is fixed (fixed
partial sums whatever the thread count), so a run is reproducible bit for bit on one machine.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dichotomy.errors import ConfigError
from dichotomy.kernels import tuning
from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba.base import NumbaEngine

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


@njit(cache=True, inline="always")
def update(u, v, j, gw, L, lr, wd):
    """Coordinate j's GD step p <- p - lr (g + wd p), given gw = (X^T g)_j; returns its new w_j = u_j^L - v_j^L."""
    uj, vj = u[j], v[j]
    uj -= lr * (L * power(uj, L - 1) * gw + wd * uj)
    vj -= lr * (-L * power(vj, L - 1) * gw + wd * vj)
    u[j], v[j] = uj, vj
    return power(uj, L) - power(vj, L)


@njit(cache=True, inline="always")
def sum_parts(part, f):
    """f = the fixed partial sums of the outputs, added in a fixed order."""
    for i in range(f.shape[0]):
        acc = 0.0
        for c in range(part.shape[0]):
            acc += part[c, i]
        f[i] = acc


BLOCK = 64   # columns of X per block: n x 64 int8 (16 KiB at n = 256) stays in L1 between its two uses
CHUNKS = 8   # fixed partial sums of the outputs, whatever the thread count, so results do not depend on it


def blocked(X: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """X (n, d) as contiguous column blocks (ceil(d / block), n, block), the last one zero-padded."""
    n, d = X.shape
    nb = -(-d // block)
    out = np.zeros((nb, n, block), X.dtype)
    for k in range(nb):
        j0 = k * block
        out[k, :, : min(d, j0 + block) - j0] = X[:, j0:j0 + block]
    return out


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def advance(U, V, L, Xb, y, code, lr, wd, steps, F, G, part, wbuf, gbuf, xbuf, active, done):
    """``steps`` GD steps in place for the B runs with ``active[b]``, one pass over X per step for all of them.

    Run b is row b of U, V, with depth L[b] and rates lr[b] and wd[b]. ``F`` (B, n) holds X w_b for the current u, v on
    entry and on return. A run whose loss stops being finite is frozen (``active`` cleared, ``done[b]`` = the steps it
    did); the others go on.

    w_{s+1, j} depends only on (X^T g_s)_j, u_j and v_j, so each column block of X, converted once into the working
    dtype (``xbuf``) and while it sits in cache, gives, for every run, X[:, J]^T g_s, the update of u_J and v_J, and
    X[:, J] w_{s+1, J}: its share of the next step's outputs. The shares are summed in :data:`CHUNKS` fixed partial sums
    (one per group of blocks), in a fixed order.
    """
    nb, n, bs = Xb.shape
    B, d = U.shape
    per = (nb + CHUNKS - 1) // CHUNKS
    for s in range(steps):
        for b in range(B):
            if active[b] and not math.isfinite(klosses.scalar_value_grad(code, F[b], y, G[b])):
                active[b], done[b] = False, s
        for c in prange(CHUNKS):
            for b in range(B):
                for i in range(n):
                    part[c, b, i] = 0.0
            for k in range(c * per, min(nb, (c + 1) * per)):
                j0 = k * bs
                width = min(bs, d - j0)
                xk = xbuf[c]
                for i in range(n):  # the block in the working dtype, converted once for every run
                    for jj in range(bs):
                        xk[i, jj] = Xb[k, i, jj]
                for b in range(B):
                    if not active[b]:
                        continue
                    u, v, Lb, g = U[b], V[b], L[b], G[b]
                    for jj in range(bs):
                        gbuf[c, jj] = 0.0
                    for i in range(n):  # X[:, J]^T g, vectorized over the block's columns
                        gi = g[i]
                        for jj in range(bs):
                            gbuf[c, jj] += xk[i, jj] * gi
                    for jj in range(bs):
                        wbuf[c, jj] = update(u, v, j0 + jj, gbuf[c, jj], Lb, lr[b], wd[b]) if jj < width else 0.0
                    for i in range(n):  # X[:, J] w_{s+1}[J], from the same block, still in cache
                        acc = 0.0
                        for jj in range(bs):
                            acc += xk[i, jj] * wbuf[c, jj]
                        part[c, b, i] += acc
        for b in range(B):
            if active[b]:
                sum_parts(part[:, b], F[b])


GROUPS = 4   # column groups of 8 whose output shares are added in one sweep over the rows


def packed(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """+-1 data X (n, d) as bits: ``colbits`` column by column and ``rowbits`` row by row.

    ``colbits`` (d, ceil(n/8)) has bit t of [j, r] set when X[8r + t, j] = +1, and ``rowbits`` (ceil(d/8), n) has bit t
    of [q, i] set when X[i, 8q + t] = +1. Padding bits are 0 (-1); padded rows and columns meet a zero (g of a padded
    row, w of a padded column), so they add nothing.
    """
    n, d = X.shape
    n8, d8 = -(-n // 8), -(-d // 8)
    P = np.zeros((n8 * 8, d8 * 8), np.uint8)
    P[:n, :d] = X > 0
    colbits = np.packbits(P.T.reshape(d8 * 8, n8, 8), axis=2, bitorder="little")[:d, :, 0]
    rowbits = np.packbits(P.reshape(n8 * 8, d8, 8), axis=2, bitorder="little")[:n, :, 0].T
    return np.ascontiguousarray(colbits), np.ascontiguousarray(rowbits)


@njit(cache=True, inline="always")
def signed_sums(vals, base, T, row):
    """The signed sums of 8 values in all 256 sign patterns: T[row, b] = sum_t s_t vals[base + t] over t < 8.

    s_t = +1 where bit t of b is set and -1 where not. The table is filled by doubling (T[b + 2^t] = T[b] + 2 vals[t]).
    """
    s = 0.0
    for t in range(8):
        s -= vals[base + t]
    T[row, 0] = s
    size = 1
    for t in range(8):
        add = 2.0 * vals[base + t]
        for b in range(size):
            T[row, size + b] = T[row, b] + add
        size *= 2


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def advance_signs(u, v, L, colbits, rowbits, y, code, lr, wd, steps, f, g, gp, TG, part, wq, TW):
    """:func:`advance` for +-1 data held as bits (:func:`packed`): the same steps, from tables of signed sums.

    Every product is formed from tables of signed sums (the "four Russians" method), exact up to the order of the
    additions.

    X^T g: the rows in groups of 8; per group a table of the 256 signed sums of its 8 g_i; (X^T g)_j is the sum of
    ceil(n/8) entries, one per group, picked by column j's bits. X w: the same with the columns in groups of 8: per
    group the 256 signed sums of its 8 new w_j, and output i adds the entry its bits pick. Lookups and additions replace
    2 n d multiply-adds and int8 conversions: ~4x fewer operations.
    """
    d, n8 = colbits.shape
    d8, n = rowbits.shape
    nq = (d8 + GROUPS - 1) // GROUPS
    per = (nq + CHUNKS - 1) // CHUNKS
    value = 0.0
    for s in range(steps):
        value = klosses.scalar_value_grad(code, f, y, g)
        if not math.isfinite(value):
            return s, value
        for i in range(n):
            gp[i] = g[i]  # gp is zero beyond n
        for r in prange(n8):
            signed_sums(gp, 8 * r, TG, r)
        for c in prange(CHUNKS):
            for i in range(n):
                part[c, i] = 0.0
            for qq in range(c * per, min(nq, (c + 1) * per)):
                q0 = qq * GROUPS
                groups = min(GROUPS, d8 - q0)
                for h in range(groups):
                    for t in range(8):
                        j = 8 * (q0 + h) + t
                        w = 0.0
                        if j < d:
                            a0 = a1 = a2 = a3 = 0.0  # four chains: one chain of lookups is latency-bound
                            r = 0
                            while r + 4 <= n8:
                                a0 += TG[r, colbits[j, r]]
                                a1 += TG[r + 1, colbits[j, r + 1]]
                                a2 += TG[r + 2, colbits[j, r + 2]]
                                a3 += TG[r + 3, colbits[j, r + 3]]
                                r += 4
                            while r < n8:
                                a0 += TG[r, colbits[j, r]]
                                r += 1
                            w = update(u, v, j, (a0 + a1) + (a2 + a3), L, lr, wd)
                        wq[c, 8 * h + t] = w
                    signed_sums(wq[c], 8 * h, TW[c], h)
                if groups == GROUPS:
                    for i in range(n):
                        part[c, i] += ((TW[c, 0, rowbits[q0, i]] + TW[c, 1, rowbits[q0 + 1, i]])
                                       + (TW[c, 2, rowbits[q0 + 2, i]] + TW[c, 3, rowbits[q0 + 3, i]]))
                else:
                    for h in range(groups):
                        for i in range(n):
                            part[c, i] += TW[c, h, rowbits[q0 + h, i]]
        sum_parts(part, f)
    return steps, value


LAYOUTS = ("bits", "blocks")


def check_layout(layout) -> str | None:
    """``layout`` if it is one of :data:`LAYOUTS`, None as None (timed); anything else is a ConfigError."""
    if layout is not None and layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)} (or None: the faster here), got {layout!r}")
    return layout


class DiagonalNetEngine(NumbaEngine):
    """B diagonal nets on one dataset, run b's u, v being row b of (B, d) arrays.

    Run b's train outputs X w_b (row b of ``F``) are carried from step to step. +-1 data: the bit-table loop
    (:func:`advance_signs`), one run after another, or the int8 column-block loop, whichever a timed trial on this host
    found faster for this size (:mod:`dichotomy.kernels.tuning`; they round differently, so the choice is kept for the
    run and saved in its state); anything else: the column-block loop (:func:`advance`), every run per block.
    ``layout="bits"`` or ``"blocks"`` pins it.
    """

    OPTIONS = ("threads", "layout")

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None, threads=None,
                 layout=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule, threads=threads)
        layout = check_layout(layout)
        self.L = np.array([r.config.L for r in runs], np.int64)
        self.lr = np.array([r.lr for r in runs], self.dtype)
        self.wd = np.array([r.wd for r in runs], self.dtype)
        self.U = np.array([r.params["u"] for r in runs], self.dtype)
        self.V = np.array([r.params["v"] for r in runs], self.dtype)
        # +-1 integer data are kept as int8; anything else is converted to the working dtype (no copy when it
        # already is).
        self.X = {k: None if X is None else np.ascontiguousarray(X, dtype=np.int8 if X.dtype == np.int8 else self.dtype)
                  for k, X in self.X.items()}
        X = self.X["train"]
        n, d = X.shape
        # X in the kernel's layout, made on first use: bits or blocks for +-1 data, column blocks otherwise
        self.pm1 = X.dtype == np.int8 and bool(np.all(np.abs(X) == 1))
        if layout == "bits" and not self.pm1:
            raise ConfigError("layout='bits' needs +-1 training inputs; these are not: use 'blocks' or None")
        self.choice = layout if layout is not None else None if self.pm1 else "blocks"
        self.signs = self.choice == "bits"
        self.layout = None
        self.w = np.empty(d, self.dtype)
        self.F = np.empty((self.B, n), self.dtype)  # X w_b for the current u, v, carried from step to step
        self.f_valid = False
        self.G = np.empty((self.B, n), self.dtype)

    def advance(self, steps):
        if self.choice is None:
            self._choose()
        super().advance(steps)

    def _choose(self) -> None:
        """Bits or blocks for +-1 data: the cached choice for this host and size, or a timed trial of both."""
        n, d = self.X["train"].shape
        size = f"n={n} d={d} B={self.B} {np.dtype(self.dtype).name}"
        self.choice = tuning.choose(f"{self.model.NAME} layout", size, LAYOUTS, self._trial)
        self.signs, self.layout = self.choice == "bits", None

    def _trial(self, layout: str) -> float:
        """Seconds per step of ``layout`` (the engine's state is put back afterwards)."""
        saved = self.state()
        self.signs, self.layout = layout == "bits", None
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                return tuning.time_per_step(self.advance_steps)
        finally:
            self.load_state(saved)

    def kernel_info(self) -> dict:
        return {**super().kernel_info(), "layout": self.choice or "chosen at the first step"}

    def advance_steps(self, steps):
        if self.layout is None:
            self.layout = self._layout()
        if not self.f_valid:
            for b in range(self.B):
                weights(self.U[b], self.V[b], int(self.L[b]), self.w)
                matvec(self.X["train"], self.w, self.F[b])
            self.f_valid = True
        if self.signs:
            return super().advance_steps(steps)
        self.advance_together(steps, lambda active, done: advance(
            self.U, self.V, self.L, *self.layout[0], self.y["train"], self.code, self.lr, self.wd, steps, self.F,
            self.G, *self.layout[1], active, done))

    def advance_run(self, b, steps):  # +-1 data
        return advance_signs(self.U[b], self.V[b], int(self.L[b]), *self.layout[0], self.y["train"], self.code,
                             self.lr[b], self.wd[b], steps, self.F[b], self.G[b], *self.layout[1])[0]

    def _layout(self) -> tuple[tuple, tuple]:
        """(X in the kernel's layout, the kernel's scratch buffers)."""
        n, d = self.X["train"].shape
        if self.signs:
            colbits, rowbits = packed(self.X["train"])
            n8 = colbits.shape[1]
            return (colbits, rowbits), (np.zeros(8 * n8, self.dtype), np.empty((n8, 256), self.dtype),
                                        np.empty((CHUNKS, n), self.dtype), np.empty((CHUNKS, 8 * GROUPS), self.dtype),
                                        np.empty((CHUNKS, GROUPS, 256), self.dtype))
        scratch = (np.empty((CHUNKS, self.B, n), self.dtype), np.empty((CHUNKS, BLOCK), self.dtype),
                   np.empty((CHUNKS, BLOCK), self.dtype), np.empty((CHUNKS, n, BLOCK), self.dtype))
        return (blocked(self.X["train"]),), scratch

    def state(self):
        """The runs' u, v and the train outputs the next step starts from.

        Computed once and then carried, the train outputs are part of what makes a resumed run continue bit for bit.
        """
        out = super().state()
        if self.f_valid:
            out["train_outputs"] = self.F.copy()
        if self.choice is not None:
            out["layout"] = np.array(LAYOUTS.index(self.choice))
        return out

    def load_state(self, state):
        if "layout" in state:  # a run resumes with the layout it started with (they round differently)
            self.choice = LAYOUTS[int(state["layout"])]
            self.signs, self.layout = self.choice == "bits", None
        super().load_state(state)  # set_run_arrays marks the carried outputs stale
        if "train_outputs" in state:
            self.F[:] = np.reshape(state["train_outputs"], self.F.shape)
            self.f_valid = True

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
        self.f_valid = False
