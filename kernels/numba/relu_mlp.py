"""Two-layer homogeneous ReLU MLP, compiled (twin of refimpl/relu_mlp.py for depth L = 2, the paper's).

Two-hot inputs (modular arithmetic: one 1 among the first p columns, one among the last p) make the first
layer a gather, z_i = W1[:, a_i] + W1[:, p + b_i] + b1, and its backward a scatter-add: ~58% of the dense
FLOPs removed, exactly. Other inputs use a dense product. W1 is kept transposed, (D, h), so both are
contiguous row operations; the output layer's products go to BLAS (np.dot in non-parallel njit code).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.numba import losses as klosses
from kernels.numba.engine import Engine
from refimpl.errors import ConfigError


@njit(cache=True)
def hidden_two_hot(W1T, b1, A, B, Z):
    """Z = pre-activations (n, h) for two-hot inputs with hot columns A_i and B_i."""
    for i in range(A.shape[0]):
        Z[i] = W1T[A[i]] + W1T[B[i]] + b1


@njit(cache=True)
def hidden_dense(W1T, b1, X, Z):
    Z[:] = np.dot(X, W1T) + b1


@njit(cache=True)
def scores(Z, W2, H, F):
    """H = relu(Z), F = H W2^T."""
    H[:] = np.maximum(Z, 0.0)
    F[:] = np.dot(H, W2.T)


@njit(cache=True)
def _loss(code, F, y, G):
    if code == 3:
        return klosses.cross_entropy_value_grad(F, y, G)
    return klosses.scalar_value_grad(code, F[:, 0], y, G[:, 0])


@njit(cache=True)
def advance(W1T, b1, W2, two_hot, A, B, X, y, code, lr, wd, steps, Z, H, F, G):
    """``steps`` GD steps in place; returns (steps done before a non-finite loss, the last loss)."""
    value = 0.0
    for s in range(steps):
        if two_hot:
            hidden_two_hot(W1T, b1, A, B, Z)
        else:
            hidden_dense(W1T, b1, X, Z)
        scores(Z, W2, H, F)
        value = _loss(code, F, y, G)
        if not math.isfinite(value):
            return s, value
        dW2 = np.dot(G.T, H)
        dZ = np.dot(G, W2) * (Z > 0)
        db1 = dZ.sum(axis=0)
        if two_hot:
            dW1T = np.zeros_like(W1T)
            for i in range(A.shape[0]):
                dW1T[A[i]] += dZ[i]
                dW1T[B[i]] += dZ[i]
        else:
            dW1T = np.dot(X.T, dZ)
        W1T -= lr * (dW1T + wd * W1T)
        b1 -= lr * (db1 + wd * b1)
        W2 -= lr * (dW2 + wd * W2)
    return steps, value


def _two_hot_columns(X, p):
    """(A, B) if every row of X has one 1 in its first p columns and one in its last p, else None."""
    if X.shape[1] != 2 * p or not np.all((X == 0) | (X == 1)):
        return None
    first, second = X[:, :p], X[:, p:]
    if not (np.all(first.sum(axis=1) == 1) and np.all(second.sum(axis=1) == 1)):
        return None
    return np.ascontiguousarray(first.argmax(axis=1)), np.ascontiguousarray(p + second.argmax(axis=1))


class ReluMlpEngine(Engine):
    def __init__(self, config, params, data, dtype, probe):
        if config.L != 2:
            raise ConfigError(f"the numba ReLU MLP kernel covers depth L = 2 (the paper's), not L = {config.L}; "
                              "use the numpy backend")
        super().__init__(data, dtype, probe)
        self.W1T = np.array(np.asarray(params["W1"]).T, dtype=dtype, order="C")  # a copy, even when h = 1
        self.b1 = np.array(params["b1"], dtype=dtype)
        self.W2 = np.array(params["W2"], dtype=dtype)
        p = config.D // 2
        self.inputs = {}
        for split, X in self.X.items():
            if X is None:
                continue
            hot = _two_hot_columns(X, p) if config.D % 2 == 0 else None
            empty = np.zeros(0, np.int64)
            self.inputs[split] = ((True, *hot, np.zeros((0, config.D), dtype)) if hot is not None else
                                  (False, empty, empty, np.ascontiguousarray(X, dtype=dtype)))
        n = len(self.y["train"])
        self.Z, self.H = np.empty((n, config.h), dtype), np.empty((n, config.h), dtype)
        self.F, self.G = np.empty((n, config.out), dtype), np.empty((n, config.out), dtype)

    def advance(self, steps, lr, wd):
        cast = self.dtype(1).dtype.type
        return advance(self.W1T, self.b1, self.W2, *self.inputs["train"], self.y["train"], self.code, cast(lr),
                       cast(wd), steps, self.Z, self.H, self.F, self.G)

    def outputs(self, split):
        two_hot, A, B, X = self.inputs[split]
        n = len(A) if two_hot else len(X)
        Z, H = np.empty((n, self.b1.size), self.dtype), np.empty((n, self.b1.size), self.dtype)
        F = np.empty((n, self.W2.shape[0]), self.dtype)
        if two_hot:
            hidden_two_hot(self.W1T, self.b1, A, B, Z)
        else:
            hidden_dense(self.W1T, self.b1, X, Z)
        scores(Z, self.W2, H, F)
        return F if self.code == 3 else F[:, 0].copy()

    def params(self):
        return {"W1": self.W1T.T.astype(np.float64), "b1": self.b1.astype(np.float64),
                "W2": self.W2.astype(np.float64)}

    def norm(self):
        return float(math.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in (self.W1T, self.b1, self.W2))))
