"""Homogeneous ReLU MLP of any depth L, compiled (twin of refimpl/relu_mlp.py).

Two-hot inputs (modular arithmetic: one 1 among the first p columns, one among the last p) make the first
layer a gather, z_i = W1[:, a_i] + W1[:, p + b_i] + b1, and its backward a scatter-add: ~58% of the dense
FLOPs removed, exactly. Other inputs use a dense product. W1 is kept transposed, (D, h), so both are
contiguous row operations; the other layers' products go to BLAS (np.dot with an ``out`` array).

Every (n, h) array a step needs is allocated once per engine (:class:`Workspace`): a fresh 30 MB array per
step costs its page faults, which measured more than the GEMMs at h = 1024. The ReLU is fused into the
gather, and the mask of the backward pass into the scatter and the bias gradient (H > 0 exactly where
Z > 0, so only the activations are kept).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.typed import List

from dichotomy.kernels.blas import BlasPerRun
from dichotomy.kernels.codes import CROSS_ENTROPY
from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba.base import NumbaEngine


@njit(cache=True)
def first_layer(W1T, b1, two_hot, A, B, X, H):
    """H = relu(X W1^T + b1) (n, h) in place; for two-hot inputs a gather of the rows A_i and B_i of W1^T."""
    n, h = H.shape
    if two_hot:
        for i in range(n):
            a, c = A[i], B[i]
            for j in range(h):
                z = W1T[a, j] + W1T[c, j] + b1[j]
                H[i, j] = z if z > 0 else 0
    else:
        np.dot(X, W1T, H)
        for i in range(n):
            for j in range(h):
                z = H[i, j] + b1[j]
                H[i, j] = z if z > 0 else 0


@njit(cache=True)
def relu_inplace(H):
    for i in range(H.shape[0]):
        for j in range(H.shape[1]):
            if not H[i, j] > 0:
                H[i, j] = 0


@njit(cache=True)
def forward(W1T, b1, Ws, two_hot, A, B, X, Hs, F):
    """Activations Hs[l] (n, h_l) of the L - 1 hidden layers and the logits F = H_{L-1} W_L^T (n, out).

    Both are written into the given arrays.
    """
    first_layer(W1T, b1, two_hot, A, B, X, Hs[0])
    for layer in range(len(Ws) - 1):
        np.dot(Hs[layer], Ws[layer].T, Hs[layer + 1])
        relu_inplace(Hs[layer + 1])
    np.dot(Hs[len(Ws) - 1], Ws[len(Ws) - 1].T, F)


@njit(cache=True)
def _loss(code, F, y, G):
    if code == CROSS_ENTROPY:
        return klosses.cross_entropy_value_grad(F, y, G)
    return klosses.scalar_value_grad(code, F[:, 0], y, G[:, 0])


@njit(cache=True)
def first_layer_grads(two_hot, A, B, X, H, Dl, dW1T, db1):
    """The mask H > 0 applied to the back-propagated Dl (n, h), fused with the first layer's gradients.

    Fused are db1 = sum_i Dl_i and, for two-hot inputs, the scatter dW1^T[A_i] += Dl_i, dW1^T[B_i] += Dl_i; dense inputs
    take dW1^T = X^T Dl.
    """
    n, h = H.shape
    db1[:] = 0
    if two_hot:
        dW1T[:] = 0
        for i in range(n):
            a, c = A[i], B[i]
            for j in range(h):
                v = Dl[i, j] if H[i, j] > 0 else 0
                db1[j] += v
                dW1T[a, j] += v
                dW1T[c, j] += v
    else:
        for i in range(n):
            for j in range(h):
                v = Dl[i, j] if H[i, j] > 0 else 0
                Dl[i, j] = v
                db1[j] += v
        np.dot(X.T, Dl, dW1T)


@njit(cache=True)
def decay_step(W, grad, lr, wd):
    """W <- W - lr (grad + wd W), elementwise in place (the one update rule)."""
    flat, g = W.reshape(-1), grad.reshape(-1)
    for i in range(flat.shape[0]):
        flat[i] = flat[i] - lr * (g[i] + wd * flat[i])


@njit(cache=True)
def advance(W1T, b1, Ws, two_hot, A, B, X, y, code, lr, wd, steps, Hs, Ds, F, G, grads, dW1T, db1):
    """``steps`` GD steps in place; returns (steps done before a non-finite loss, the last loss).

    ``Ws`` = [W2, ..., WL]; the other arrays are the workspace.
    """
    value = 0.0
    k = len(Ws)
    for s in range(steps):
        forward(W1T, b1, Ws, two_hot, A, B, X, Hs, F)
        value = _loss(code, F, y, G)
        if not math.isfinite(value):
            return s, value
        delta = G
        for layer in range(k - 1, -1, -1):  # Ws[layer] maps Hs[layer] to the next pre-activation
            np.dot(delta.T, Hs[layer], grads[layer])
            np.dot(delta, Ws[layer], Ds[layer])
            if layer > 0:
                D, H = Ds[layer], Hs[layer]
                for i in range(D.shape[0]):
                    for j in range(D.shape[1]):
                        if not H[i, j] > 0:
                            D[i, j] = 0
            delta = Ds[layer]
        first_layer_grads(two_hot, A, B, X, Hs[0], Ds[0], dW1T, db1)
        decay_step(W1T, dW1T, lr, wd)
        decay_step(b1, db1, lr, wd)
        for layer in range(k):
            decay_step(Ws[layer], grads[layer], lr, wd)
    return steps, value


def _two_hot_columns(X, p):
    """(A, B) if every row of X has one 1 in its first p columns and one in its last p, else None."""
    if X.shape[1] != 2 * p or not np.all((X == 0) | (X == 1)):
        return None
    first, second = X[:, :p], X[:, p:]
    if not (np.all(first.sum(axis=1) == 1) and np.all(second.sum(axis=1) == 1)):
        return None
    return np.ascontiguousarray(first.argmax(axis=1)), np.ascontiguousarray(p + second.argmax(axis=1))


def workspace(W1T, Ws, n, dtype):
    """The arrays one net's forward pass over n inputs needs: (activations Hs, logits F)."""
    h = [W1T.shape[1]] + [W.shape[0] for W in Ws[:-1]]
    return List([np.empty((n, width), dtype) for width in h]), np.empty((n, Ws[len(Ws) - 1].shape[0]), dtype)


def training_workspace(W1T, b1, Ws, n, dtype):
    """Everything :func:`advance` writes besides the parameters: Hs, Ds, F, G, grads, dW1T, db1."""
    Hs, F = workspace(W1T, Ws, n, dtype)
    return (Hs, List([np.empty_like(H) for H in Hs]), F, np.empty_like(F), List([np.empty_like(W) for W in Ws]),
            np.empty_like(W1T), np.empty_like(b1))


class ReluMlpEngine(BlasPerRun, NumbaEngine):
    """B MLPs on one dataset (each with its own depth and width), advanced one after another.

    The products go to OpenBLAS, whose sums over the samples round differently with its thread count: the
    count is fixed for a run (:class:`dichotomy.kernels.blas.BlasPerRun`; ``threads=N`` pins it).
    """

    THREAD_FREE = False

    @classmethod
    def unsupported_data(cls, config, data) -> str | None:
        if data.loss != "cross_entropy" and config.out != 1:
            return f"the numba ReLU MLP trains the {data.loss} loss with one output only (out=1), not out={config.out}"
        return None

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None, threads=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule, threads=threads)
        self.init_blas()
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
        # one training workspace per distinct architecture: runs advance one after another
        self.spaces = {}
        n = len(self.y["train"])
        for net in self.nets:
            key = self._shape(net)
            if key not in self.spaces:
                self.spaces[key] = training_workspace(*net, n, self.dtype)

    @staticmethod
    def _shape(net):
        W1T, _, Ws = net
        return W1T.shape, tuple(W.shape for W in Ws)

    def _net(self, run):
        """(W1^T (D, h), b1, [W2, ..., WL]) in the working dtype, copies."""
        P, L = run.params, run.config.L
        return (np.array(P["W1"].T, dtype=self.dtype, order="C"), np.array(P["b1"], dtype=self.dtype),
                List([np.array(P[f"W{layer}"], dtype=self.dtype) for layer in range(2, L + 1)]))

    def advance_unlimited(self, steps):
        self.advance_steps(steps)

    def blas_size(self) -> str:
        shapes = sorted({self._shape(net) for net in self.nets})
        return f"n={len(self.y['train'])} {'two-hot' if self.inputs['train'][0] else 'dense'} {shapes} B={self.B} " \
               f"{np.dtype(self.dtype).name}"

    def advance_run(self, b, steps):
        net, run = self.nets[b], self.runs[b]
        return advance(*net, *self.inputs["train"], self.y["train"], self.code, self.real(run.lr),
                       self.real(run.wd), steps, *self.spaces[self._shape(net)])[0]

    def run_outputs(self, b, split):
        W1T, b1, Ws = self.nets[b]
        inputs = self.inputs[split]
        n = len(inputs[1]) if inputs[0] else len(inputs[3])
        Hs, F = workspace(W1T, Ws, n, self.dtype)
        forward(W1T, b1, Ws, *inputs, Hs, F)
        return F

    def run_arrays(self, b):
        W1T, b1, Ws = self.nets[b]
        return {"W1": W1T.T, "b1": b1, **{f"W{layer}": W for layer, W in enumerate(Ws, start=2)}}

    def set_run_arrays(self, b, arrays):
        W1T, b1, Ws = self.nets[b]
        W1T[...], b1[...] = arrays["W1"].T, arrays["b1"]
        for layer, W in enumerate(Ws, start=2):
            W[...] = arrays[f"W{layer}"]
