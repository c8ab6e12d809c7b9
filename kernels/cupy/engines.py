"""CuPy engines on the engine protocol (:class:`dichotomy.refimpl.engine.Engine`), driven by the one driver.

Each engine holds B >= 1 runs of one model on one dataset: parameters, data and bookkeeping live on the
device. The runs are advanced one after another, each with its own parameter buffers; batched launches
(one launch for all B runs, ``blockIdx.y`` = run) are a later GPU issue. Every launch therefore has grid
y = 1 and is given run b's arrays and its slots of the per-run bookkeeping arrays (size B: loss
accumulator, divergence flag, step counter), as views at offset b; the kernels index those slots at 0.

A step's loss is accumulated on the device and ``finish_step`` (common.cuh) freezes a run at the first step
whose loss is not finite, recording that step from the run's own 64-bit step counter, so divergence is
reported at the oracle's step with no host synchronization while advancing: :meth:`CupyEngine.advance`
reads the divergence flags once per call. Metrics are computed on the device from the outputs
(refimpl/metrics.py) and cross to the host as a handful of scalars at recorded steps.

Every kernel is launched through :meth:`dichotomy.kernels.cupy.cuda_modules.Kernels.launch`; the kernel functions
are looked up once per engine. Supported: float64 and float32, the constant learning rate; the diagonal net
on +-1 (int8) inputs, completion on any data, the ReLU MLP on two-hot inputs with cross-entropy.
"""

from __future__ import annotations

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.kernels import codes
from dichotomy.kernels.cupy import cuda_modules
from dichotomy.kernels.cupy.cuda_modules import THREADS, Kernels, blocks
from dichotomy.kernels.registry import ModelEngines
from dichotomy.refimpl import diagonal_net, matrix_factorization, metrics, relu_mlp

DTYPES = {"float64": np.float64, "float32": np.float32}


def _c(a, dtype) -> np.ndarray:
    """A C-contiguous host array of ``dtype`` (uploaded as it is: cupy.asarray keeps the host layout)."""
    return np.ascontiguousarray(a, dtype=dtype)


def as_int8(X) -> np.ndarray | None:
    """X as int8 if that is exact (int8 already, or every entry is -1 or +1), else None."""
    X = np.asarray(X)
    if X.dtype == np.int8:
        return X
    if X.size == 0 or (X.dtype.kind in "biuf" and np.all((X == 1) | (X == -1))):
        return X.astype(np.int8)
    return None


def two_hot_columns(X, D: int):
    """(A, B) int32, the hot columns of each row of X (n, D); None if X is not two-hot.

    Two-hot means one 1 among the first D/2 columns and one among the last D/2, zeros elsewhere.
    """
    X = np.asarray(X)
    if D % 2 or X.ndim != 2 or X.shape[1] != D or not np.all((X == 0) | (X == 1)):
        return None
    p = D // 2
    first, second = X[:, :p], X[:, p:]
    if not (np.all(first.sum(axis=1) == 1) and np.all(second.sum(axis=1) == 1)):
        return None
    return _c(first.argmax(axis=1), np.int32), _c(p + second.argmax(axis=1), np.int32)


class CupyEngine:
    """The B-run bookkeeping every CuPy engine shares.

    A model's engine names its CUDA source (``SOURCE``) and the kernels it launches (``KERNELS``), and
    provides, per run b: ``advance_run(b, steps)`` (launches only, no host synchronization),
    ``run_outputs(b, split)`` (a device array in the working dtype), ``run_arrays(b)`` (its parameters on
    the device, named like refimpl's, in refimpl's shapes where the device layout differs: see
    ``to_refimpl``) and ``set_run_arrays(b, arrays)`` (host arrays, refimpl's shapes, written in place).
    """

    DTYPES = tuple(DTYPES)
    SCHEDULES = ("constant",)
    SOURCE = ""
    KERNELS: tuple[str, ...] = ()

    @classmethod
    def unsupported_data(cls, config, data) -> str | None:
        return None

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        if schedule is not None:
            raise ConfigError("the cupy engines train at a constant learning rate only")
        self.cp = cp = cuda_modules.cupy()  # looked up at call time: the tests put a stub there
        self.model, self.runs, self.task, self.loss = model, runs, data.task, data.loss
        self.code = codes.code_of(data.loss)
        self.dtype = DTYPES[dtype]
        self.real = np.dtype(self.dtype).type  # kernel scalars in the working dtype exactly
        self.kernels = Kernels(self.SOURCE, dtype, ("finish_step", *self.KERNELS))
        self.B, self.step = len(runs), 0
        self.diverged_at = np.full(self.B, -1, np.int64)
        # Per-run bookkeeping, one slot per run; run b's launches get the views [b:b+1] (self.slots[b]).
        self.loss_acc = cp.zeros(self.B, self.dtype)
        self.diverged = cp.full(self.B, -1, np.int64)
        self.device_step = cp.zeros(self.B, np.int64)
        self.slots = [(self.loss_acc[b:b + 1], self.diverged[b:b + 1], self.device_step[b:b + 1])
                      for b in range(self.B)]
        # Targets: the working dtype for the kernels (class labels int64), float64 for the metrics.
        labels = self.code == codes.CROSS_ENTROPY
        self.y = {s: cp.asarray(_c(getattr(data, f"y_{s}"), np.int64 if labels else self.dtype))
                  for s in ("train", "test")}
        self.y_metric = {s: cp.asarray(_c(getattr(data, f"y_{s}"), np.int64 if labels else np.float64))
                         for s in ("train", "test")}

    def launch(self, name, grid, block, args):
        self.kernels.launch(name, grid, block, args)

    def finish(self, b: int) -> None:
        """End of run b's step (finish_step on its slots)."""
        self.launch("finish_step", (1,), (32,), (*self.slots[b], np.int32(1)))

    # -- the protocol ------------------------------------------------------------------------------------

    def advance(self, steps: int) -> None:
        going = np.flatnonzero(self.diverged_at < 0)
        if steps > 0 and going.size:
            for b in going:
                self.advance_run(int(b), int(steps))
            flags = self.diverged.get()  # the one host synchronization of the call
            for b in going:
                if flags[b] >= 0:
                    self.diverged_at[b] = flags[b]
        self.step += steps

    def metrics(self) -> list[dict[str, float]]:
        out = []
        for b, run in enumerate(self.runs):
            f_train, f_test = self.run_outputs(b, "train"), self.run_outputs(b, "test")
            out.append(metrics.evaluate(self.cp, self.task, self.loss, self.model.degree(run.config), f_train,
                                         self.y_metric["train"], f_test, self.y_metric["test"],
                                         list(self.run_arrays(b).values())))
        return out

    def outputs(self, split: str) -> list[np.ndarray]:
        if split not in ("train", "test", "probe"):
            raise ConfigError(f"split must be train, test or probe, got {split!r}")
        return [self.run_outputs(b, split).get().astype(np.float64) for b in range(self.B)]

    def params(self) -> list[dict[str, np.ndarray]]:
        return [{k: self.to_refimpl(k, v.get()).astype(np.float64) for k, v in self.run_arrays(b).items()}
                for b in range(self.B)]

    def state(self) -> dict[str, np.ndarray]:
        out = {"step": np.array(self.step), "diverged_at": self.diverged_at.copy(),
               "device_step": self.device_step.get()}
        out.update({f"run{b}/{k}": self.to_refimpl(k, v.get()) for b in range(self.B)
                    for k, v in self.run_arrays(b).items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        cp = self.cp
        self.step = int(state["step"])
        self.diverged_at = np.array(state["diverged_at"], np.int64)
        device_step = state.get("device_step")
        if device_step is None:  # a state saved without device counters: a run stopped where it diverged
            device_step = np.where(self.diverged_at >= 0, self.diverged_at, self.step)
        # Written in place: the slot views and any captured graph keep pointing at these buffers.
        self.device_step[...] = cp.asarray(_c(device_step, np.int64))
        self.diverged[...] = cp.asarray(self.diverged_at)
        self.loss_acc.fill(0)
        for b in range(self.B):
            self.set_run_arrays(b, {k: _c(state[f"run{b}/{k}"], self.dtype) for k in self.run_arrays(b)})

    def to_refimpl(self, name: str, host: np.ndarray) -> np.ndarray:
        """A parameter copied from the device, in refimpl's shape (the identity unless the layout differs)."""
        return host

    # -- what each model provides ------------------------------------------------------------------------

    def advance_run(self, b: int, steps: int) -> None:
        raise NotImplementedError

    def run_outputs(self, b: int, split: str):
        raise NotImplementedError

    def run_arrays(self, b: int) -> dict:
        raise NotImplementedError

    def set_run_arrays(self, b: int, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _split(self, table: dict, split: str):
        if table.get(split) is None:
            raise ConfigError(f"no {split} inputs were given to this engine")
        return table[split]


class DiagonalNetEngine(CupyEngine):
    """Twin of kernels/numba/diagonal_net.py, with int8 X and its transposed copy on the device.

    Run b's u, v are row b of (B, d) arrays. A step is four launches: weights, forward + loss, update, finish_step.
    """

    SOURCE = "diagonal_net"
    KERNELS = ("diag_weights", "diag_forward_loss", "diag_update", "diag_outputs")

    @classmethod
    def unsupported_data(cls, config, data) -> str | None:
        if as_int8(data.X_train) is None or as_int8(data.X_test) is None:
            return "the cupy diagonal net takes +-1 (int8) inputs only; use --backend numba"
        return None

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
        cp = self.cp
        self.d = runs[0].config.d
        self.L = [np.int32(r.config.L) for r in runs]
        self.lr = [self.real(r.lr) for r in runs]
        self.wd = [self.real(r.wd) for r in runs]
        self.U = cp.asarray(_c([r.params["u"] for r in runs], self.dtype))
        self.V = cp.asarray(_c([r.params["v"] for r in runs], self.dtype))
        # (device inputs, exact in int8): train and test always are; a real-valued probe is kept in the working
        # dtype and multiplied by cuBLAS.
        self.X = {}
        for split, X in (("train", data.X_train), ("test", data.X_test), ("probe", probe)):
            if X is None:
                continue
            exact = as_int8(X)
            self.X[split] = (cp.asarray(_c(exact if exact is not None else X, np.int8 if exact is not None
                                           else self.dtype)), exact is not None)
        X = self.X["train"][0]
        self.XT = cp.ascontiguousarray(X.T)
        n = X.shape[0]
        self.w = cp.empty(self.d, self.dtype)
        self.f, self.g = cp.empty(n, self.dtype), cp.empty(n, self.dtype)

    def _weights(self, b):
        self.launch("diag_weights", (blocks(self.d),), (THREADS,),
                    (self.U[b], self.V[b], self.L[b], np.int32(self.d), self.w))

    def advance_run(self, b, steps):
        X, _ = self.X["train"]
        n, d = X.shape
        u, v, y = self.U[b], self.V[b], self.y["train"]
        loss, diverged, _ = self.slots[b]
        forward = (X, self.w, y, np.int32(n), np.int32(d), np.int32(self.code), self.f, self.g, loss, diverged)
        update = (self.XT, self.g, np.int32(n), np.int32(d), self.L[b], self.lr[b], self.wd[b], u, v, loss,
                  diverged)
        for _ in range(steps):
            self._weights(b)
            self.launch("diag_forward_loss", (n,), (THREADS,), forward)
            self.launch("diag_update", (blocks(d * 32),), (THREADS,), update)
            self.finish(b)

    def run_outputs(self, b, split):
        X, exact = self._split(self.X, split)
        n = X.shape[0]
        if n == 0:
            return self.cp.zeros(0, self.dtype)
        self._weights(b)
        if not exact:
            return X @ self.w
        f = self.cp.empty(n, self.dtype)
        self.launch("diag_outputs", (n,), (THREADS,), (X, self.w, np.int32(n), np.int32(self.d), f))
        return f

    def run_arrays(self, b):
        return {"u": self.U[b], "v": self.V[b]}

    def set_run_arrays(self, b, arrays):
        cp = self.cp
        self.U[b], self.V[b] = cp.asarray(arrays["u"]), cp.asarray(arrays["v"])


class MatrixFactorizationEngine(CupyEngine):
    """Twin of kernels/numba/matrix_factorization.py that replays its steps from CUDA graphs.

    Whole blocks of ``GRAPH_STEPS`` steps are replayed from CUDA graphs, since launches dominate a step at the paper's
    sizes.

    Each run has two buffers, ``Us[p, b]`` / ``Vs[p, b]`` for p = 0, 1: a step reads buffer p and writes buffer 1 - p,
    and ``parity[b]`` says which holds run b's parameters now. A graph records the device pointers it was captured with,
    so it is only correct for the parity it was captured at: one graph per (run, parity) is captured on first need, and
    an even ``GRAPH_STEPS`` brings the parameters back to the buffer they started in. Replays are then right whatever
    number of eager steps came before or after.
    """

    SOURCE = "matrix_factorization"
    KERNELS = ("mc_slopes", "mc_update", "mc_outputs")
    GRAPH_STEPS = 64  # even: a replay leaves the parameters in the buffer it started from

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
        cp = self.cp
        self.d = d = runs[0].config.d
        self.Us, self.Vs = cp.empty((2, self.B, d, d), self.dtype), cp.empty((2, self.B, d, d), self.dtype)
        self.Us[0] = cp.asarray(_c([r.params["U"] for r in runs], self.dtype))
        self.Vs[0] = cp.asarray(_c([r.params["V"] for r in runs], self.dtype))
        self.parity = [0] * self.B
        self.buffers = [[(self.Us[p, b], self.Vs[p, b]) for p in (0, 1)] for b in range(self.B)]
        self.pairs = {split: None if X is None else tuple(cp.asarray(_c(np.asarray(X)[:, c], np.int32))
                                                          for c in (0, 1))
                      for split, X in (("train", data.X_train), ("test", data.X_test), ("probe", probe))}
        rows, cols = (np.asarray(data.X_train)[:, c].astype(np.int64) for c in (0, 1))
        n = len(rows)
        ends, others = np.concatenate([rows, cols]), np.concatenate([cols, rows])
        order = np.argsort(ends, kind="stable")
        self.adjacency = tuple(cp.asarray(_c(a, np.int32)) for a in (
            np.searchsorted(ends[order], np.arange(d + 1)), others[order],
            np.concatenate([np.arange(n), np.arange(n)])[order]))
        self.g = cp.empty((self.B, n), self.dtype)  # row b: run b's slopes
        # read by mc_update through pointers (slot b), as a batched launch would
        self.lr = cp.asarray(_c([r.lr for r in runs], self.dtype))
        self.wd = cp.asarray(_c([r.wd for r in runs], self.dtype))
        self.graphs = {}  # (run, parity) -> captured graph of GRAPH_STEPS steps

    def _step(self, b, p):
        """Launch one step of run b reading buffer p and writing buffer 1 - p (no host synchronization)."""
        rows, cols = self.pairs["train"]
        n, d = len(rows), self.d
        (U, V), (U2, V2) = self.buffers[b][p], self.buffers[b][1 - p]
        loss, diverged, _ = self.slots[b]
        self.launch("mc_slopes", (blocks(n * 32), 1), (THREADS,),
                    (U, V, rows, cols, self.y["train"], np.int32(n), np.int32(d), np.int32(self.code), self.g[b],
                     loss, diverged))
        self.launch("mc_update", (d, 1), (min(THREADS, 32 * blocks(d, 32)),),
                    (U, V, U2, V2, *self.adjacency, self.g[b], np.int32(n), np.int32(d), self.lr[b:b + 1],
                     self.wd[b:b + 1], loss, diverged))
        self.finish(b)

    def advance_run(self, b, steps):
        replays, rest = divmod(steps, self.GRAPH_STEPS)
        p = self.parity[b]
        if replays:
            graph = self.graphs.get((b, p))
            if graph is None:
                graph = self._capture(b, p)
            for _ in range(replays):
                graph.launch()
        for _ in range(rest):
            self._step(b, p)
            p = 1 - p
        self.parity[b] = p

    def _capture(self, b, p):
        """Capture GRAPH_STEPS steps of run b starting from buffer p (recorded, not run)."""
        stream = self.cp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                q = p
                for _ in range(self.GRAPH_STEPS):
                    self._step(b, q)
                    q = 1 - q
            finally:
                graph = stream.end_capture()
        self.graphs[(b, p)] = graph
        return graph

    def run_outputs(self, b, split):
        rows, cols = self._split(self.pairs, split)
        n = len(rows)
        f = self.cp.empty(n, self.dtype)
        if n:
            U, V = self.buffers[b][self.parity[b]]
            self.launch("mc_outputs", (blocks(n * 32), 1), (THREADS,),
                        (U, V, rows, cols, np.int32(n), np.int32(self.d), f))
        return f

    def run_arrays(self, b):
        U, V = self.buffers[b][self.parity[b]]
        return {"U": U, "V": V}

    def set_run_arrays(self, b, arrays):
        U, V = self.buffers[b][self.parity[b]]
        U[...], V[...] = self.cp.asarray(arrays["U"]), self.cp.asarray(arrays["V"])


class ReluMlpEngine(CupyEngine):
    """Twin of kernels/numba/relu_mlp.py: two-hot gather/scatter kernels for the first layer, cuBLAS for the others.

    W1 is kept transposed on the device, W1T (D, h), as the numba engine keeps it, so the gather and the scatter-add
    run along contiguous rows; ``params``/``state`` give W1 (h, D) and ``load_state`` takes it. Each run has its own
    width and depth.
    """

    SOURCE = "relu_mlp"
    KERNELS = ("mlp_gather", "mlp_scatter", "ce_slopes", "sgd_update")

    @classmethod
    def unsupported_data(cls, config, data) -> str | None:
        if data.loss != "cross_entropy":
            return "the cupy ReLU MLP trains with cross-entropy only; use --backend numba"
        if two_hot_columns(data.X_train, config.D) is None or two_hot_columns(data.X_test, config.D) is None:
            return "the cupy ReLU MLP takes two-hot inputs only (modular arithmetic); use --backend numba"
        return None

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        super().__init__(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
        cp = self.cp
        self.nets = []
        for r in runs:
            P = r.params
            net = {"W1T": cp.asarray(_c(np.asarray(P["W1"]).T, self.dtype)),
                   "b1": cp.asarray(_c(P["b1"], self.dtype))}
            net.update({f"W{layer}": cp.asarray(_c(P[f"W{layer}"], self.dtype)) for layer in range(2, r.config.L + 1)})
            self.nets.append(net)
        self.grads = [{k: cp.empty_like(v) for k, v in net.items()} for net in self.nets]
        self.lr = [self.real(r.lr) for r in runs]
        self.wd = [self.real(r.wd) for r in runs]
        # (True, ia, ib) for two-hot inputs (train and test always are), else (False, X): a dense probe set
        self.inputs = {}
        D = runs[0].config.D
        for split, X in (("train", data.X_train), ("test", data.X_test), ("probe", probe)):
            if X is None:
                continue
            hot = two_hot_columns(X, D)
            self.inputs[split] = ((True, *(cp.asarray(a) for a in hot)) if hot is not None else
                                  (False, cp.asarray(_c(X, self.dtype))))

    def _forward(self, b, split):
        """Pre-activations and activations of the hidden layers, and the logits F (n, out)."""
        cp, net, c = self.cp, self.nets[b], self.runs[b].config
        inputs = self._split(self.inputs, split)
        if inputs[0]:
            _, ia, ib = inputs
            n = ia.shape[0]
            Z, A = cp.empty((n, c.h), self.dtype), cp.empty((n, c.h), self.dtype)
            self.launch("mlp_gather", (n,), (THREADS,), (net["W1T"], net["b1"], ia, ib, np.int32(n), np.int32(c.h),
                                                         Z, A))
        else:
            Z = inputs[1] @ net["W1T"] + net["b1"]
            A = cp.maximum(Z, 0)
        Zs, As = [Z], [A]
        for layer in range(2, c.L):
            Z = As[-1] @ net[f"W{layer}"].T
            Zs.append(Z)
            As.append(cp.maximum(Z, 0))
        return Zs, As, cp.ascontiguousarray(As[-1] @ net[f"W{c.L}"].T)

    def advance_run(self, b, steps):
        for _ in range(steps):
            self._step(b)

    def _step(self, b):
        cp, net, grads, c = self.cp, self.nets[b], self.grads[b], self.runs[b].config
        loss, diverged, _ = self.slots[b]
        _, ia, ib = self.inputs["train"]
        Zs, As, F = self._forward(b, "train")
        n = F.shape[0]
        G = cp.empty_like(F)
        self.launch("ce_slopes", (n,), (128,), (F, self.y["train"], np.int32(n), np.int32(c.out), G, loss, diverged))
        delta = G
        for layer in range(c.L, 1, -1):  # W{layer} maps As[layer - 2] to the next pre-activation
            grads[f"W{layer}"][...] = delta.T @ As[layer - 2]
            delta = (delta @ net[f"W{layer}"]) * (Zs[layer - 2] > 0)
        delta = cp.ascontiguousarray(delta)
        grads["W1T"].fill(0)
        self.launch("mlp_scatter", (n,), (THREADS,), (delta, ia, ib, np.int32(n), np.int32(c.h), grads["W1T"]))
        grads["b1"][...] = delta.sum(axis=0)
        for key, p in net.items():
            self.launch("sgd_update", (blocks(p.size),), (THREADS,),
                        (p, grads[key], np.uint64(p.size), self.lr[b], self.wd[b], loss, diverged))
        self.finish(b)

    def run_outputs(self, b, split):
        inputs = self._split(self.inputs, split)
        if inputs[1].shape[0] == 0:  # nothing to launch
            return self.cp.zeros((0, self.runs[b].config.out), self.dtype)
        return self._forward(b, split)[2]

    def run_arrays(self, b):
        net = self.nets[b]
        return {"W1": net["W1T"], **{k: v for k, v in net.items() if k != "W1T"}}

    def to_refimpl(self, name, host):
        return np.ascontiguousarray(host.T) if name == "W1" else host

    def set_run_arrays(self, b, arrays):
        net = self.nets[b]
        for key, value in arrays.items():
            target = net["W1T"] if key == "W1" else net[key]
            target[...] = self.cp.asarray(_c(value.T if key == "W1" else value, self.dtype))


ENGINE = ModelEngines("cupy", {diagonal_net.NAME: DiagonalNetEngine,
                               matrix_factorization.NAME: MatrixFactorizationEngine,
                               relu_mlp.NAME: ReluMlpEngine})
