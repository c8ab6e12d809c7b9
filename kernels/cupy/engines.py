"""GPU engines with the numba engines' interface (advance, outputs, params, norm; metrics on the host).

Each engine keeps its parameters and training data on the device and advances many steps per call with
no host synchronization: the per-step loss is accumulated on the device, and ``finish_step`` (common.cuh)
records the first step whose loss is not finite and freezes the run there, so divergence is reported at
the same step as the oracle's. Metrics are computed on the host from outputs copied back at recorded steps
(the numba engines' compiled losses), as ``refimpl.train.run`` records them.
"""

from __future__ import annotations

import math

import numpy as np

from dichotomy.kernels import BackendUnavailable
from dichotomy.kernels.cupy.modules import THREADS, blocks, kernel
from dichotomy.kernels.numba.engine import Engine
from dichotomy.kernels.numba.relu_mlp import _two_hot_columns


class GpuEngine(Engine):
    """Device bookkeeping shared by the models: loss accumulator, divergence flag, step counter."""

    model = ""

    def __init__(self, data, dtype, probe):
        import cupy

        super().__init__(data, dtype, probe)
        self.cp = cupy
        self.name = np.dtype(dtype).name  # float64 or float32: which compiled module to use
        self.loss_acc = cupy.zeros(1, dtype)
        self.last_loss = cupy.zeros(1, dtype)
        self.diverged = cupy.full(1, -1, np.int32)
        self.step_count = cupy.zeros(1, np.int32)

    def k(self, name):
        return kernel(self.model, self.name, name)

    def finish(self):
        self.k("finish_step")((1,), (32,), (self.loss_acc, self.last_loss, self.diverged, self.step_count,
                                             np.int32(1)))

    def advance(self, steps, lr, wd):
        """``steps`` steps (:meth:`run_steps`), then one read of the device's divergence flag and last loss."""
        start = int(self.step_count.get()[0])
        self.run_steps(steps, self.dtype(lr), self.dtype(wd))  # kernel scalars must be real_t exactly
        at = int(self.diverged.get()[0])
        if at >= 0:
            return at - start, math.nan
        return steps, float(self.last_loss.get()[0])

    def run_steps(self, steps, lr, wd):
        """Launch ``steps`` steps, each followed by the end-of-step bookkeeping; no host synchronization."""
        for _ in range(steps):
            self.step(lr, wd)
            self.finish()


class DiagonalNetEngine(GpuEngine):
    """Twin of kernels/numba/diagonal_net.py: int8 X and its transposed copy on the device."""

    model = "diagonal_net"

    def __init__(self, config, params, data, dtype, probe):
        super().__init__(data, dtype, probe)
        cp = self.cp
        for X in self.X.values():
            if X is not None and not (X.dtype == np.int8 or np.all(np.abs(X) == 1)):
                raise BackendUnavailable("the cupy diagonal net takes +-1 inputs (int8); use --backend numba")
        self.L, self.d = config.L, config.d
        self.u, self.v = cp.asarray(params["u"], dtype), cp.asarray(params["v"], dtype)
        self.dev = {k: None if X is None else cp.asarray(np.ascontiguousarray(X, dtype=np.int8))
                    for k, X in self.X.items()}
        self.XT = cp.ascontiguousarray(self.dev["train"].T)
        self.y_dev = cp.asarray(self.y["train"])
        n = self.dev["train"].shape[0]
        self.w, self.f, self.g = cp.empty(self.d, dtype), cp.empty(n, dtype), cp.empty(n, dtype)

    def _weights(self):
        self.k("diag_weights")((blocks(self.d),), (THREADS,), (self.u, self.v, np.int32(self.L),
                                                               np.int32(self.d), self.w))

    def step(self, lr, wd):
        n, d = self.dev["train"].shape
        self._weights()
        self.k("diag_forward_loss")((n,), (THREADS,), (self.dev["train"], self.w, self.y_dev, np.int32(n),
                                                       np.int32(d), np.int32(self.code), self.f, self.g,
                                                       self.loss_acc, self.diverged))
        self.k("diag_update")((blocks(d * 32),), (THREADS,), (self.XT, self.g, np.int32(n), np.int32(d),
                                                              np.int32(self.L), lr, wd, self.u, self.v,
                                                              self.loss_acc, self.diverged))

    def outputs(self, split):
        X = self.dev[split]
        self._weights()
        f = self.cp.empty(X.shape[0], self.dtype)
        self.k("diag_outputs")((X.shape[0],), (THREADS,), (X, self.w, np.int32(X.shape[0]), np.int32(self.d), f))
        return f.get()

    def params(self):
        return {"u": self.u.get().astype(np.float64), "v": self.v.get().astype(np.float64)}

    def norm(self):
        return float(math.sqrt(float(self.u.astype(np.float64) @ self.u.astype(np.float64))
                               + float(self.v.astype(np.float64) @ self.v.astype(np.float64))))


class MatrixFactorizationEngine(GpuEngine):
    """Twin of kernels/numba/matrix_factorization.py (B = 1 of the batched kernels); steps are replayed
    from a CUDA graph of ``GRAPH_STEPS`` steps captured once per (lr, wd), since launches dominate."""

    model = "matrix_factorization"
    GRAPH_STEPS = 64  # even: the ping-pong buffers are back in place after a replay

    def __init__(self, config, params, data, dtype, probe):
        super().__init__(data, dtype, probe)
        cp = self.cp
        self.d = config.d
        self.U, self.V = cp.asarray(params["U"], dtype), cp.asarray(params["V"], dtype)
        self.U2, self.V2 = cp.empty_like(self.U), cp.empty_like(self.V)
        self.pairs = {k: None if X is None else (cp.asarray(X[:, 0], np.int32), cp.asarray(X[:, 1], np.int32))
                      for k, X in self.X.items()}
        rows, cols = (np.asarray(self.X["train"][:, c]) for c in (0, 1))
        n = len(rows)
        ends, others = np.concatenate([rows, cols]), np.concatenate([cols, rows])
        order = np.argsort(ends, kind="stable")
        self.adjacency = tuple(cp.asarray(a, np.int32) for a in (
            np.searchsorted(ends[order], np.arange(config.d + 1)), others[order],
            np.concatenate([np.arange(n), np.arange(n)])[order]))
        self.y_dev = cp.asarray(self.y["train"])
        self.g = cp.empty(n, dtype)
        self.lr_dev, self.wd_dev = cp.zeros(1, dtype), cp.zeros(1, dtype)  # read by the kernels at each replay
        self.graph = None

    def step(self, lr, wd):
        rows, cols = self.pairs["train"]
        n, d = len(rows), self.d
        self.k("mc_slopes")((blocks(n * 32), 1), (THREADS,), (self.U, self.V, rows, cols, self.y_dev, np.int32(n),
                                                              np.int32(d), np.int32(self.code), self.g,
                                                              self.loss_acc, self.diverged))
        self.k("mc_update")((d, 1), (min(THREADS, 32 * blocks(d, 32)),),
                            (self.U, self.V, self.U2, self.V2, *self.adjacency, self.g, np.int32(n), np.int32(d),
                             self.lr_dev, self.wd_dev, self.loss_acc, self.diverged))
        self.U, self.U2, self.V, self.V2 = self.U2, self.U, self.V2, self.V

    def run_steps(self, steps, lr, wd):
        """Whole blocks of ``GRAPH_STEPS`` steps replayed from the captured graph, the rest launched."""
        self.lr_dev.fill(lr)
        self.wd_dev.fill(wd)
        replays, rest = divmod(steps, self.GRAPH_STEPS)
        if replays:
            graph = self.graph or self._capture()
            for _ in range(replays):
                graph.launch()
        super().run_steps(rest, lr, wd)

    def _capture(self):
        for name in ("mc_slopes", "mc_update", "finish_step"):  # load the module before capturing
            self.k(name)
        stream = self.cp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            for _ in range(self.GRAPH_STEPS):
                self.step(None, None)  # lr and wd are read from lr_dev / wd_dev
                self.finish()
            self.graph = stream.end_capture()
        # Capturing recorded the launches without running them; the buffers swapped an even number of
        # times, so self.U is again the buffer the first captured step reads.
        return self.graph

    def outputs(self, split):
        rows, cols = self.pairs[split]
        f = self.cp.empty(len(rows), self.dtype)
        self.k("mc_outputs")((blocks(len(rows) * 32), 1), (THREADS,), (self.U, self.V, rows, cols,
                                                                      np.int32(len(rows)), np.int32(self.d), f))
        return f.get()

    def params(self):
        return {"U": self.U.get().astype(np.float64), "V": self.V.get().astype(np.float64)}

    def norm(self):
        return float(math.sqrt(float((self.U.astype(np.float64) ** 2).sum() + (self.V.astype(np.float64) ** 2).sum())))


class ReluMlpEngine(GpuEngine):
    """Twin of kernels/numba/relu_mlp.py: two-hot gather/scatter kernels, cuBLAS for the dense layers."""

    model = "relu_mlp"

    def __init__(self, config, params, data, dtype, probe):
        super().__init__(data, dtype, probe)
        cp = self.cp
        if self.code != 3:
            raise BackendUnavailable("the cupy ReLU MLP trains with cross-entropy only; use --backend numba")
        self.config = config
        self.P = {k: cp.asarray(v, dtype) for k, v in params.items()}
        self.grads = {k: cp.empty_like(v) for k, v in self.P.items()}
        p = config.D // 2
        self.hot = {}
        for split, X in self.X.items():
            hot = None if X is None or config.D % 2 else _two_hot_columns(X, p)
            if X is not None and hot is None:
                raise BackendUnavailable("the cupy ReLU MLP takes two-hot inputs only; use --backend numba")
            if hot is not None:
                self.hot[split] = tuple(cp.asarray(a, np.int32) for a in hot)
        self.y_dev = cp.asarray(self.y["train"], np.int64)

    def _forward(self, split):
        cp, c = self.cp, self.config
        ia, ib = self.hot[split]
        n = len(ia)
        Z = cp.empty((n, c.h), self.dtype)
        A = cp.empty_like(Z)
        self.k("mlp_gather")((n,), (THREADS,), (self.P["W1"], self.P["b1"], ia, ib, np.int32(n), np.int32(c.h),
                                                np.int32(c.D), Z, A))
        Zs, As = [Z], [A]
        for layer in range(2, c.L):
            Z = As[-1] @ self.P[f"W{layer}"].T
            Zs.append(Z)
            As.append(cp.maximum(Z, 0))
        return Zs, As, As[-1] @ self.P[f"W{c.L}"].T

    def step(self, lr, wd):
        cp, c = self.cp, self.config
        Zs, As, F = self._forward("train")
        n = F.shape[0]
        G = cp.empty_like(F)
        self.k("ce_slopes")((n,), (128,), (F, self.y_dev, np.int32(n), np.int32(c.out), G, self.loss_acc))
        delta = G
        for layer in range(c.L, 1, -1):
            self.grads[f"W{layer}"][...] = delta.T @ As[layer - 2]
            delta = (delta @ self.P[f"W{layer}"]) * (Zs[layer - 2] > 0)
        self.grads["W1"].fill(0)
        ia, ib = self.hot["train"]
        self.k("mlp_scatter")((n,), (THREADS,), (delta, ia, ib, np.int32(n), np.int32(c.h), np.int32(c.D),
                                                 self.grads["W1"]))
        self.grads["b1"][...] = delta.sum(axis=0)
        for key, p in self.P.items():
            self.k("sgd_update")((blocks(p.size),), (THREADS,), (p, self.grads[key], np.uint64(p.size), lr, wd,
                                                                 self.loss_acc, self.diverged))

    def outputs(self, split):
        return self._forward(split)[2].get()

    def params(self):
        return {k: v.get().astype(np.float64) for k, v in self.P.items()}

    def norm(self):
        return float(math.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in self.P.values())))


ENGINES = {"diagonal_net": DiagonalNetEngine, "matrix_factorization": MatrixFactorizationEngine,
           "relu_mlp": ReluMlpEngine}
