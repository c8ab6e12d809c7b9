"""Homogeneous ReLU MLP of any depth L, compiled (twin of refimpl/relu_mlp.py).

Two-hot inputs (modular arithmetic: one 1 among the first p columns, one among the last p) make the first
layer a gather, z_i = W1[:, a_i] + W1[:, p + b_i] + b1, and its backward a scatter-add: ~58% of the dense
FLOPs removed, exactly. Other inputs use a dense product. W1 is kept transposed, (D, h), so both are
contiguous row operations; the other layers' products go to BLAS (np.dot in non-parallel njit code).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.typed import List

from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba.engine import NumbaEngine


@njit(cache=True)
def hidden_two_hot(W1T, b1, A, B, Z):
    """Z = pre-activations (n, h) for two-hot inputs with hot columns A_i and B_i."""
    for i in range(A.shape[0]):
        Z[i] = W1T[A[i]] + W1T[B[i]] + b1


@njit(cache=True)
def hidden_dense(W1T, b1, X, Z):
    Z[:] = np.dot(X, W1T) + b1


@njit(cache=True)
def relu(Z):
    """max(Z, 0) in Z's own dtype (np.maximum(Z, 0.0) would promote float32 to float64)."""
    H = np.empty_like(Z)
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            H[i, j] = Z[i, j] if Z[i, j] > 0 else 0
    return H


@njit(cache=True)
def forward(W1T, b1, Ws, two_hot, A, B, X):
    """Pre-activations and activations of the L - 1 hidden layers, and the logits F = H W_L^T."""
    Z = np.empty((A.shape[0] if two_hot else X.shape[0], b1.shape[0]), W1T.dtype)
    if two_hot:
        hidden_two_hot(W1T, b1, A, B, Z)
    else:
        hidden_dense(W1T, b1, X, Z)
    H = relu(Z)
    Zs, Hs = [Z], [H]
    for layer in range(len(Ws) - 1):
        Z = np.dot(H, Ws[layer].T)
        H = relu(Z)
        Zs.append(Z)
        Hs.append(H)
    return Zs, Hs, np.dot(H, Ws[len(Ws) - 1].T)


@njit(cache=True)
def _loss(code, F, y, G):
    if code == 3:
        return klosses.cross_entropy_value_grad(F, y, G)
    return klosses.scalar_value_grad(code, F[:, 0], y, G[:, 0])


@njit(cache=True)
def advance(W1T, b1, Ws, two_hot, A, B, X, y, code, lr, wd, steps, G):
    """``steps`` GD steps in place (``Ws`` = [W2, ..., WL]); returns (steps done before a non-finite loss,
    the last loss)."""
    value = 0.0
    k = len(Ws)
    for s in range(steps):
        Zs, Hs, F = forward(W1T, b1, Ws, two_hot, A, B, X)
        value = _loss(code, F, y, G)
        if not math.isfinite(value):
            return s, value
        delta, grads = G, []
        for layer in range(k - 1, -1, -1):  # Ws[layer] maps Hs[layer] to the next pre-activation
            grads.append(np.dot(delta.T, Hs[layer]))
            delta = np.dot(delta, Ws[layer]) * (Zs[layer] > 0)
        db1 = delta.sum(axis=0)
        if two_hot:
            dW1T = np.zeros_like(W1T)
            for i in range(A.shape[0]):
                dW1T[A[i]] += delta[i]
                dW1T[B[i]] += delta[i]
        else:
            dW1T = np.dot(X.T, delta)
        W1T -= lr * (dW1T + wd * W1T)
        b1 -= lr * (db1 + wd * b1)
        for layer in range(k):
            W = Ws[layer]
            W -= lr * (grads[k - 1 - layer] + wd * W)
    return steps, value


def _two_hot_columns(X, p):
    """(A, B) if every row of X has one 1 in its first p columns and one in its last p, else None."""
    if X.shape[1] != 2 * p or not np.all((X == 0) | (X == 1)):
        return None
    first, second = X[:, :p], X[:, p:]
    if not (np.all(first.sum(axis=1) == 1) and np.all(second.sum(axis=1) == 1)):
        return None
    return np.ascontiguousarray(first.argmax(axis=1)), np.ascontiguousarray(p + second.argmax(axis=1))


class ReluMlpEngine(NumbaEngine):
    """B MLPs on one dataset (each with its own depth and width), advanced one after another."""

    @classmethod
    def unsupported_data(cls, config, data) -> str | None:
        if data.loss != "cross_entropy" and config.out != 1:
            return f"the numba ReLU MLP trains the {data.loss} loss with one output only (out=1), not out={config.out}"
        return None

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
        self.nets = [self._net(r) for r in runs]
        D = runs[0].config.D
        p = D // 2
        self.inputs = {}
        for split, X in self.X.items():
            if X is None:
                continue
            hot = _two_hot_columns(X, p) if D % 2 == 0 else None
            empty = np.zeros(0, np.int64)
            self.inputs[split] = ((True, *hot, np.zeros((0, D), self.dtype)) if hot is not None else
                                  (False, empty, empty, np.ascontiguousarray(X, dtype=self.dtype)))

    def _net(self, run):
        """(W1^T (D, h), b1, [W2, ..., WL]) in the working dtype, copies."""
        P, L = run.params, run.config.L
        return (np.array(P["W1"].T, dtype=self.dtype, order="C"), np.array(P["b1"], dtype=self.dtype),
                List([np.array(P[f"W{layer}"], dtype=self.dtype) for layer in range(2, L + 1)]))

    def advance_run(self, b, steps):
        W1T, b1, Ws = self.nets[b]
        G = np.empty((len(self.y["train"]), self.runs[b].config.out), self.dtype)
        run = self.runs[b]
        return advance(W1T, b1, Ws, *self.inputs["train"], self.y["train"], self.code, self.real(run.lr),
                       self.real(run.wd), steps, G)[0]

    def run_outputs(self, b, split):
        W1T, b1, Ws = self.nets[b]
        return forward(W1T, b1, Ws, *self.inputs[split])[2]

    def run_arrays(self, b):
        W1T, b1, Ws = self.nets[b]
        return {"W1": W1T.T, "b1": b1, **{f"W{layer}": W for layer, W in enumerate(Ws, start=2)}}

    def set_run_arrays(self, b, arrays):
        W1T, b1, Ws = self.nets[b]
        W1T[...], b1[...] = arrays["W1"].T, arrays["b1"]
        for layer, W in enumerate(Ws, start=2):
            W[...] = arrays[f"W{layer}"]
