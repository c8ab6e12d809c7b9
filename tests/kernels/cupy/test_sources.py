"""The CuPy backend without a GPU.

1. Every CUDA source compiles (NVRTC on the CPU) for sm_90 in float64 and float32, defines the kernels listed
   in :data:`KERNELS`, and its float kernels do no f64 arithmetic.
2. The engines of kernels/cupy/engines.py run on :class:`FakeCupy`, a stub of the few CuPy functions they use
   (NumPy arrays with a ``.get()``, RawModule, streams, graph capture). Every launch is checked against the
   ``extern "C" __global__`` signature parsed from the source the engine compiles: argument count, pointer vs
   scalar, the scalar's NumPy type (int: np.int32, long long: np.int64, size_t: np.uint64, real_t: the
   engine's dtype) and the pointee's dtype; grids must be non-empty, cover the work, and warp-shuffling
   kernels get whole warps. The launch then runs a NumPy emulation of what the kernel is written to compute
   (:data:`EMULATORS`), on the very arrays passed, so construction, advance (eager, and replays of captured
   graphs, which reuse the captured arrays as CUDA graphs reuse pointers), outputs, metrics, params and
   state round trips are compared with the float64 oracle.

What this does not cover: whether the CUDA code computes what its emulator says (indexing, reductions,
atomics, races): only a GPU run tells (the ``backend`` fixture of tests/kernels/test_backends.py, marked ``gpu``);
nor CuPy's own behaviour (kernel argument passing, graph capture rules, matmul layouts), which the stub
imitates from CuPy's documentation.
"""

import math
import re
import types

import numpy as np
import pytest

from dichotomy import errors
from dichotomy.kernels import BackendUnavailable, get_backend
from dichotomy.kernels.cupy import cuda_modules, sources, unavailable_reason
from dichotomy.refimpl import data, diagonal_net, matrix_factorization, relu_mlp
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.engine import ReferenceEngine, RunSpec
from dichotomy.refimpl.steppers import LossNormalized
from dichotomy.run import driver

KERNELS = {  # the extern "C" kernels each source defines (common.cuh's finish_step included)
    "diagonal_net": {"diag_weights", "diag_forward_loss", "diag_update", "diag_outputs", "finish_step"},
    "matrix_factorization": {"mc_slopes", "mc_update", "mc_outputs", "finish_step"},
    "relu_mlp": {"mlp_gather", "mlp_scatter", "ce_slopes", "sgd_update", "finish_step"},
}


# -- compilation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", sources.MODELS)
def test_every_cuda_source_compiles_for_hopper(model, dtype):
    ptx, compiler = sources.compile_ptx(model, dtype)
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx))
    assert entries == KERNELS[model], f"{compiler}: {entries ^ KERNELS[model]}"
    assert ".target sm_90" in ptx
    # float kernels must not compute in double: no f64 arithmetic outside conversions
    if dtype == "float32":
        assert not re.search(r"\b(add|mul|fma\.rn|div\.rn)\.f64\b", ptx), "a float kernel promotes to double"


def test_a_kernel_error_is_reported_with_the_compiler_log(monkeypatch):
    monkeypatch.setattr(sources, "source", lambda model: "extern \"C\" __global__ void k() { undefined_name; }")
    with pytest.raises(sources.CompileError, match="undefined_name"):
        sources.compile_ptx("diagonal_net")


def test_unknown_model_and_dtype_are_refused():
    with pytest.raises(Exception, match="no CUDA source"):
        sources.source("conv_net")
    with pytest.raises(Exception, match="dtype"):
        sources.options("float16")


def test_cupy_backend_says_why_it_cannot_run():
    reason = unavailable_reason()
    if reason is None:
        assert get_backend("cupy").name == "cupy"
        return
    with pytest.raises(BackendUnavailable, match="cupy backend cannot run here") as e:
        get_backend("cupy")
    assert reason in str(e.value)


def test_gpu_engines_import_without_a_gpu_and_cover_every_model():
    from dichotomy.kernels.cupy.engines import ENGINE as GPU
    from dichotomy.kernels.numba import ENGINE as CPU

    assert set(GPU.engines) == set(CPU.engines)
    assert {engine.SOURCE for engine in GPU.engines.values()} == set(sources.MODELS)
    for engine in GPU.engines.values():  # every kernel an engine fetches is one its source defines
        assert {"finish_step", *engine.KERNELS} == KERNELS[engine.SOURCE]
        assert set(engine.DTYPES) == {"float64", "float32"} and engine.SCHEDULES == ("constant",)


# -- signatures -------------------------------------------------------------------------------------------

SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
SCALARS = {"int": np.int32, "long long": np.int64, "size_t": np.uint64}
POINTEES = {"int": np.int32, "long long": np.int64, "signed char": np.int8}


def signatures(code: str) -> dict[str, list[tuple[str, str]]]:
    """{kernel: [(kind, type), ...]} of every extern "C" kernel in ``code``; kind is "pointer" or "scalar",
    type the C type without const (``real_t`` left symbolic)."""
    out = {}
    for name, params in SIGNATURE.findall(code):
        args = []
        for param in filter(None, (p.strip() for p in params.split(","))):
            ctype = re.sub(r"\s+", " ", param.replace("const", " ").rsplit(None, 1)[0].replace("*", " ")).strip()
            args.append(("pointer" if "*" in param else "scalar", ctype))
        out[name] = args
    return out


def test_the_signature_parser_reads_every_kernel():
    for model in sources.MODELS:
        sigs = signatures(sources.source(model))
        assert set(sigs) == KERNELS[model]
    sigs = signatures(sources.source("relu_mlp"))
    assert sigs["sgd_update"] == [("pointer", "real_t"), ("pointer", "real_t"), ("scalar", "size_t"),
                                  ("scalar", "real_t"), ("scalar", "real_t"), ("pointer", "real_t"),
                                  ("pointer", "long long")]
    assert sigs["finish_step"][-1] == ("scalar", "int")


def check_launch(name, sig, real, grid, block, args):
    """Assert that ``args`` fit the parsed signature ``sig`` of kernel ``name`` compiled with real_t = ``real``."""
    assert len(grid) in (1, 2, 3) and all(isinstance(g, int | np.integer) and g > 0 for g in grid), (name, grid)
    assert len(block) in (1, 2, 3) and all(0 < b for b in block) and math.prod(block) <= 1024, (name, block)
    assert len(args) == len(sig), f"{name}: {len(args)} arguments for {len(sig)} parameters"
    for position, (arg, (kind, ctype)) in enumerate(zip(args, sig, strict=True)):
        want = real if ctype == "real_t" else (POINTEES if kind == "pointer" else SCALARS)[ctype]
        where = f"{name} argument {position} ({kind} {ctype})"
        if kind == "pointer":
            assert isinstance(arg, DevArray), f"{where}: got {type(arg).__name__}, not a device array"
            assert arg.dtype == want, f"{where}: array of {arg.dtype}, the kernel reads {np.dtype(want)}"
            assert arg.flags.c_contiguous, f"{where}: not C-contiguous"
        else:
            assert not isinstance(arg, np.ndarray), f"{where}: an array where a scalar is expected"
            assert type(arg) is want, f"{where}: {type(arg).__name__}, expected {np.dtype(want).name}"


# -- the stub ---------------------------------------------------------------------------------------------


class DevArray(np.ndarray):
    """A "device" array: a NumPy array with CuPy's ``.get()``; its reads are counted by the stub."""

    stub = None

    def get(self):
        if DevArray.stub is not None:
            DevArray.stub.reads += 1
        return np.array(self)


def dev(a) -> DevArray:
    return a.view(DevArray)


class FakeGraph:
    def __init__(self, launches):
        self.launches = launches

    def launch(self, stream=None):
        for kernel, grid, args in self.launches:  # the captured arrays themselves, as graphs keep the pointers
            kernel.run(grid, args)


class FakeStream:
    def __init__(self, stub, non_blocking=False):
        self.stub, self.captured = stub, None

    def __enter__(self):
        self.stub.streams.append(self)
        return self

    def __exit__(self, *exc):
        self.stub.streams.pop()

    def begin_capture(self, mode=None):
        assert self.captured is None and self.stub.streams[-1] is self
        self.captured = []

    def end_capture(self):
        graph, self.captured = FakeGraph(self.captured), None
        return graph


class FakeKernel:
    def __init__(self, stub, name, sig, real):
        self.stub, self.name, self.sig, self.real = stub, name, sig, real

    def __call__(self, grid, block, args):
        check_launch(self.name, self.sig, self.real, grid, block, args)
        EMULATORS[self.name].check(grid, block, args)
        self.stub.launches.append((self.name, tuple(grid), tuple(block), [type(a) for a in args]))
        stream = self.stub.streams[-1] if self.stub.streams else None
        if stream is not None and stream.captured is not None:
            stream.captured.append((self, tuple(grid), args))  # recorded, not run
        else:
            self.run(tuple(grid), args)

    def run(self, grid, args):
        EMULATORS[self.name](self.real, grid, args)


class FakeModule:
    def __init__(self, stub, code, options):
        self.stub, self.sigs = stub, signatures(code)
        real_t = next(o for o in options if o.startswith("-Dreal_t=")).split("=")[1]
        self.real = {"double": np.float64, "float": np.float32}[real_t]

    def get_function(self, name):
        assert not any(s.captured is not None for s in self.stub.streams), "a module lookup inside a capture"
        self.stub.lookups += 1
        return FakeKernel(self.stub, name, self.sigs[name], self.real)


class FakeCupy:
    """The CuPy functions the engines and kernels/cupy/metrics.py use; the rest is NumPy's."""

    ndarray = DevArray

    def __init__(self):
        self.launches, self.streams, self.reads, self.lookups = [], [], 0, 0
        self.cuda = types.SimpleNamespace(Stream=lambda non_blocking=False: FakeStream(self, non_blocking))

    def __getattr__(self, name):
        return getattr(np, name)

    def RawModule(self, code, options):
        return FakeModule(self, code, options)

    def asarray(self, a, dtype=None):
        if isinstance(a, DevArray) and (dtype is None or a.dtype == dtype):
            return a
        return dev(np.array(a, dtype=dtype, copy=True))  # an upload copies, in the host array's layout

    def ascontiguousarray(self, a, dtype=None):
        return dev(np.ascontiguousarray(a, dtype=dtype))

    def empty(self, shape, dtype=np.float64):
        # uninitialised device memory: NaN (or a sentinel) so that reading it before writing shows
        out = np.empty(shape, dtype)
        out.fill(np.nan if out.dtype.kind == "f" else -12345)
        return dev(out)

    def empty_like(self, a):
        return self.empty(a.shape, a.dtype)

    def zeros(self, shape, dtype=np.float64):
        return dev(np.zeros(shape, dtype))

    def full(self, shape, value, dtype=None):
        return dev(np.full(shape, value, dtype))


@pytest.fixture
def stub(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setattr(cuda_modules, "cupy", lambda: fake)
    cuda_modules.module.cache_clear()
    DevArray.stub = fake
    yield fake
    DevArray.stub = None
    cuda_modules.module.cache_clear()


# -- NumPy emulations of the kernels ----------------------------------------------------------------------


class Emulator:
    """What a kernel computes, in NumPy on the flat arrays it is given, and the launch shape it needs."""

    def __init__(self, fn, *, covers=None, shuffles=False, batched=False):
        self.fn, self.covers, self.shuffles, self.batched = fn, covers, shuffles, batched

    def __call__(self, real, grid, args):
        flat = [a.reshape(-1) if isinstance(a, np.ndarray) else a for a in args]
        assert all(np.shares_memory(f, a) for f, a in zip(flat, args, strict=True)
                   if isinstance(a, np.ndarray) and a.size), "a kernel argument that is not one block of memory"
        extra = {"runs": grid[1] if len(grid) > 1 else 1} if self.batched else {}
        if not self.batched:  # these kernels never read blockIdx.y: a second grid dimension would repeat them
            assert math.prod(grid[1:]) == 1, f"{self.fn.__name__}: grid {grid}"
        with np.errstate(all="ignore"):
            self.fn(real, *flat, **extra)

    def check(self, grid, block, args):
        if self.shuffles:  # __shfl_down_sync(0xffffffff) needs every lane of a warp
            assert block[0] % 32 == 0, f"{self.fn.__name__}: block {block} is not whole warps"
        if self.covers is not None:
            threads, blocks = grid[0] * block[0], grid[0]
            need, unit = self.covers(*args)
            have = {"thread": threads, "warp": threads // 32, "block": blocks}[unit]
            assert have >= need, f"{self.fn.__name__}: {have} {unit}s for {need} items"


def point_loss(code, f, y):
    """(value, slope) of point_loss (common.cuh), elementwise."""
    one = f.dtype.type(1)
    if code == 0:
        m = y * f
        sig = np.where(-m >= 0, one / (one + np.exp(m)), np.exp(-m) / (one + np.exp(-m)))
        return np.where(-m > 0, -m + np.log1p(np.exp(m)), np.log1p(np.exp(-m))), -y * sig
    if code == 1:
        e = np.exp(-y * f)
        return e, -y * e
    r = f - y
    return r * r, 2 * r


def ipow(x, k):
    out = np.ones_like(x)
    for _ in range(int(k)):
        out = out * x
    return out


def finish_step(real, loss, diverged, step, B):
    for b in range(B):
        if diverged[b] < 0:
            if np.isfinite(loss[b]):
                step[b] += 1
            else:
                diverged[b] = step[b]
        loss[b] = 0


def diag_weights(real, u, v, L, d, w):
    w[:d] = ipow(u[:d], L) - ipow(v[:d], L)


def diag_forward_loss(real, X, w, y, n, d, code, f, g, loss, diverged):
    if diverged[0] >= 0:
        return
    acc = X[:n * d].reshape(n, d).astype(real) @ w[:d]
    value, slope = point_loss(code, acc, y[:n])
    f[:n], g[:n] = acc, slope / real(n)
    loss[0] += np.sum(value / real(n), dtype=real)


def diag_update(real, XT, g, n, d, L, lr, wd, u, v, loss, diverged):
    if diverged[0] >= 0 or not np.isfinite(loss[0]):
        return
    acc = XT[:d * n].reshape(d, n).astype(real) @ g[:n]
    uj, vj = u[:d].copy(), v[:d].copy()
    du, dv = real(L) * ipow(uj, L - 1) * acc, -real(L) * ipow(vj, L - 1) * acc
    u[:d], v[:d] = uj - lr * (du + wd * uj), vj - lr * (dv + wd * vj)


def diag_outputs(real, X, w, n, d, f):
    f[:n] = X[:n * d].reshape(n, d).astype(real) @ w[:d]


def _run(a, b, size, shape=None):
    """Run b's slice of a batched array (IndexError if the array does not hold run b)."""
    if a.size < (b + 1) * size:
        raise IndexError(f"blockIdx.y = {b} reads past an array of {a.size} elements (run size {size})")
    out = a[b * size:(b + 1) * size]
    return out if shape is None else out.reshape(shape)


def mc_slopes(real, U, V, rows, cols, y, n, d, code, g, loss, diverged, *, runs=1):
    for b in range(runs):
        if diverged[b] >= 0:
            continue
        Ub, Vb = _run(U, b, d * d, (d, d)), _run(V, b, d * d, (d, d))
        r, c = rows[:n], cols[:n]
        f = np.sum(Ub[r] * Ub[c] - Vb[r] * Vb[c], axis=1)
        value, slope = point_loss(code, f, y[:n])
        _run(g, b, n)[:] = slope
        loss[b] += np.sum(value / real(n), dtype=real)


def mc_update(real, U, V, U2, V2, indptr, neighbor, obs, g, n, d, lr, wd, loss, diverged, *, runs=1):
    owner = np.repeat(np.arange(d), np.diff(indptr[:d + 1]))
    for b in range(runs):
        Ub, Vb = _run(U, b, d * d, (d, d)), _run(V, b, d * d, (d, d))
        U2b, V2b = _run(U2, b, d * d, (d, d)), _run(V2, b, d * d, (d, d))
        if diverged[b] >= 0 or not np.isfinite(loss[b]):
            U2b[...], V2b[...] = Ub, Vb
            continue
        keep, c = real(1) - lr[b] * wd[b], lr[b] / real(n)
        s = (c * _run(g, b, n)[obs[:2 * n]])[:, None]
        TU, TV = np.zeros_like(Ub), np.zeros_like(Vb)
        np.add.at(TU, owner, s * Ub[neighbor[:2 * n]])
        np.add.at(TV, owner, s * Vb[neighbor[:2 * n]])
        U2b[...], V2b[...] = keep * Ub - TU, keep * Vb + TV


def mc_outputs(real, U, V, rows, cols, n, d, f, *, runs=1):
    for b in range(runs):
        Ub, Vb = _run(U, b, d * d, (d, d)), _run(V, b, d * d, (d, d))
        r, c = rows[:n], cols[:n]
        _run(f, b, n)[:] = np.sum(Ub[r] * Ub[c] - Vb[r] * Vb[c], axis=1)


def mlp_gather(real, W1T, b1, ia, ib, n, h, Z1, A1):
    W = W1T.reshape(-1, h)
    z = W[ia[:n]] + W[ib[:n]] + b1[:h]
    Z1[:n * h], A1[:n * h] = z.ravel(), np.where(z > 0, z, real(0)).ravel()


def mlp_scatter(real, delta, ia, ib, n, h, dW1T):
    W, D = dW1T.reshape(-1, h), delta[:n * h].reshape(n, h)
    np.add.at(W, ia[:n], D)
    np.add.at(W, ib[:n], D)


def ce_slopes(real, F, y, n, C, G, loss, diverged):
    if diverged[0] >= 0:
        return
    F = F[:n * C].reshape(n, C)
    mx = F.max(axis=1, keepdims=True)
    e = np.exp(F - mx)
    total = e.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(F)
    onehot[np.arange(n), y[:n]] = 1
    G[:n * C] = ((e / total - onehot) / real(n)).ravel()
    loss[0] += np.sum((np.log(total[:, 0]) + mx[:, 0] - F[np.arange(n), y[:n]]) / real(n), dtype=real)


def sgd_update(real, p, g, size, lr, wd, loss, diverged):
    if diverged[0] >= 0 or not np.isfinite(loss[0]):
        return
    p[:size] -= lr * (g[:size] + wd * p[:size])


EMULATORS = {
    "finish_step": Emulator(finish_step, covers=lambda *a: (1, "thread")),
    "diag_weights": Emulator(diag_weights, covers=lambda u, v, L, d, w: (d, "thread")),
    "diag_forward_loss": Emulator(diag_forward_loss, shuffles=True, covers=lambda X, w, y, n, *r: (n, "block")),
    "diag_update": Emulator(diag_update, shuffles=True, covers=lambda XT, g, n, d, *r: (d, "warp")),
    "diag_outputs": Emulator(diag_outputs, shuffles=True, covers=lambda X, w, n, d, f: (n, "block")),
    "mc_slopes": Emulator(mc_slopes, batched=True, shuffles=True, covers=lambda U, V, r, c, y, n, *rest: (n, "warp")),
    "mc_update": Emulator(mc_update, batched=True, covers=lambda *a: (a[9], "block")),
    "mc_outputs": Emulator(mc_outputs, batched=True, shuffles=True, covers=lambda U, V, r, c, n, d, f: (n, "warp")),
    "mlp_gather": Emulator(mlp_gather, covers=lambda W, b, ia, ib, n, *r: (n, "block")),
    "mlp_scatter": Emulator(mlp_scatter, covers=lambda dl, ia, ib, n, *r: (n, "block")),
    "ce_slopes": Emulator(ce_slopes, shuffles=True, covers=lambda F, y, n, *r: (n, "block")),
    "sgd_update": Emulator(sgd_update, covers=lambda p, g, size, *r: (int(size), "thread")),
}


def test_every_kernel_has_an_emulator():
    assert set(EMULATORS) == set().union(*KERNELS.values())


# -- the engines on the stub ------------------------------------------------------------------------------


def _diagonal(rng, n=12, d=9, loss="logistic"):
    X = rng.choice(np.array([-1, 1], np.int8), size=(n + 7, d))
    y = np.where(rng.random(n + 7) < 0.5, -1.0, 1.0) if loss != "squared" else rng.standard_normal(n + 7)
    # train: int8 in Fortran order (the engine must upload it row-major); test: +-1 as float64 (made int8)
    ds = Dataset(np.asfortranarray(X[:n]), y[:n], X[n:].astype(np.float64), y[n:], loss, {})
    configs = [diagonal_net.Config(d=d, alpha=1.5, L=2), diagonal_net.Config(d=d, alpha=2.0, L=3)]
    return diagonal_net, configs, [diagonal_net.init(c) for c in configs], ds, [0.05, 0.02], [0.01, 0.0]


def _completion(rng, d=6, alpha=1.0, lr=(0.1, 0.05)):
    ds = data.multiplication_table(rng, d=d, train_fraction=0.5)
    ds = Dataset(np.asfortranarray(ds.X_train), ds.y_train, ds.X_test, ds.y_test, ds.loss, ds.info)
    configs = [matrix_factorization.Config(d=d, alpha=alpha, sigma=0.1),
               matrix_factorization.Config(d=d, alpha=0.7 * alpha)]
    return (matrix_factorization, configs, [matrix_factorization.init(c, rng) for c in configs], ds, list(lr),
            [0.01, 0.0])


def _mlp(rng, p=5):
    ds = data.modular_arithmetic(rng, p=p, train_fraction=0.5)
    configs = [relu_mlp.Config(D=2 * p, h=7, out=p, L=2), relu_mlp.Config(D=2 * p, h=4, out=p, L=3, init_scale=1.5)]
    return relu_mlp, configs, [relu_mlp.init(c, rng) for c in configs], ds, [0.1, 0.2], [0.01, 0.0]


CASES = {"diagonal": _diagonal, "completion": _completion, "mlp": _mlp}


def _engines(case, dtype="float64", probe=None, **kwargs):
    from dichotomy.kernels.cupy.engines import ENGINE

    module, configs, params, ds, lrs, wds = CASES[case](np.random.default_rng(3), **kwargs)
    runs = [RunSpec(c, {k: np.array(v, np.float64) for k, v in p.items()}, lr, wd)
            for c, p, lr, wd in zip(configs, params, lrs, wds, strict=True)]
    assert ENGINE.unsupported(module, runs, ds, dtype, None) is None
    return (ENGINE(module, runs, ds, probe=probe, dtype=dtype),
            ReferenceEngine(module, runs, ds, probe=probe), module, runs, ds)


def _assert_close(got, want, rtol):
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        for k in w:
            scale = max(float(np.max(np.abs(w[k]))), 1e-12)
            np.testing.assert_allclose(g[k], w[k], rtol=0, atol=rtol * scale, err_msg=f"run {b}: {k}")


def _assert_metrics(got, want, rtol):
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        assert list(g) == list(w), (list(g), list(w))
        for k in w:
            atol = 0.25 if k.endswith("acc") else rtol * max(abs(w[k]), 1e-12)
            assert g[k] == pytest.approx(w[k], rel=rtol, abs=atol), (b, k, g[k], w[k])


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("case", list(CASES))
def test_stub_engines_match_the_oracle_and_launch_by_the_signatures(stub, case, dtype, rtol):
    """Batches of two different runs through the one driver: metrics, params and probe outputs."""
    from dichotomy.kernels.cupy.engines import ENGINE

    module, configs, params, ds, lrs, wds = CASES[case](np.random.default_rng(3))
    kwargs = dict(lr=lrs, wd=wds, steps=150, record=[0, 1, 7, 64, 150], probe=ds.X_test)
    want = driver.run_batch(module, configs, params, ds, **kwargs)
    got = driver.run_batch(module, configs, params, ds, engine=ENGINE, dtype=dtype, **kwargs)
    for g, w in zip(got, want, strict=True):
        assert g.status == w.status == "completed"
        assert g.config["backend"] == "cupy" and g.config["dtype"] == dtype
        np.testing.assert_array_equal(g.steps, w.steps)
        for k in w.metrics:
            v = w.metrics[k]
            atol = 0.25 if k.endswith("acc") else rtol * np.abs(v).max()
            np.testing.assert_allclose(g.metrics[k], v, rtol=rtol, atol=atol, err_msg=k)
        _assert_close([g.params], [w.params], rtol)
        np.testing.assert_allclose(g.outputs, w.outputs, rtol=0, atol=rtol * np.abs(w.outputs).max())
    launched = {name for name, *_ in stub.launches}
    assert launched == KERNELS[{"diagonal": "diagonal_net", "completion": "matrix_factorization",
                                "mlp": "relu_mlp"}[case]]
    assert stub.lookups == len(launched)  # every kernel function looked up once, at construction


def test_completion_graph_replays_are_right_whatever_the_eager_parity(stub):
    """Odd eager steps before a replay, replays from both parities, eager steps after (engine.advance directly)."""
    engine, oracle, *_ = _engines("completion")
    for steps in (1, 64, 3, 130, 64, 5):
        engine.advance(steps)
        oracle.advance(steps)
        _assert_close(engine.params(), oracle.params(), 1e-10)
    assert engine.step == oracle.step == 267
    assert set(engine.graphs) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    np.testing.assert_array_equal(engine.state()["device_step"], [267, 267])
    _assert_metrics(engine.metrics(), oracle.metrics(), 1e-10)


def test_advance_reads_the_device_once_per_call(stub):
    for case in CASES:
        engine, *_ = _engines(case)
        for steps in (1, 70):
            stub.reads = 0
            engine.advance(steps)
            assert stub.reads == 1, (case, steps, stub.reads)


@pytest.mark.parametrize("steps", [200, 7])
def test_divergence_stops_each_run_and_its_device_counter_at_the_oracle_step(stub, steps):
    """lr = 5 diverges within a replayed graph (one advance of 200) or in eager chunks of 7."""
    engine, oracle, *_ = _engines("completion", alpha=3.0, lr=(5.0, 0.05))
    for _ in range(200 // steps):
        engine.advance(steps)
        oracle.advance(steps)
    assert oracle.diverged_at[0] >= 0 and oracle.diverged_at[1] == -1
    np.testing.assert_array_equal(engine.diverged_at, oracle.diverged_at)
    device_step = engine.state()["device_step"]
    assert device_step[0] == engine.diverged_at[0] and device_step[1] == engine.step
    _assert_close(engine.params(), oracle.params(), 1e-10)  # frozen at theta_s, as the oracle


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_state_round_trip_continues_bit_for_bit(stub, case, dtype):
    a, *_ = _engines(case, dtype)
    a.advance(70)
    state = a.state()
    if case == "mlp":  # refimpl's layout: W1 (h, D), although the device keeps W1^T
        assert state["run0/W1"].shape == (7, 10) and state["run0/W1"].dtype == np.dtype(dtype)
    b, *_ = _engines(case, dtype)
    b.advance(3)  # other buffers (completion: the other parity), other counters: all replaced by the state
    b.load_state(state)
    for engine in (a, b):
        engine.advance(65)
    for pa, pb in zip(a.params(), b.params(), strict=True):
        for k in pa:
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    np.testing.assert_array_equal(a.state()["device_step"], b.state()["device_step"])
    assert a.step == b.step == 135


@pytest.mark.parametrize("case", list(CASES))
def test_empty_splits_launch_nothing_and_give_empty_outputs(stub, case):
    module, configs, params, ds, *_ = CASES[case](np.random.default_rng(3))
    engine, *_ = _engines(case, probe=ds.X_test[:0])
    stub.launches.clear()
    outputs = engine.outputs("probe")
    assert [o.shape[0] for o in outputs] == [0, 0] and all(o.dtype == np.float64 for o in outputs)
    assert stub.launches == []


def test_real_valued_probe_sets_use_dense_products(stub):
    """A probe the kernels cannot take (real diagonal-net inputs, dense MLP inputs) goes through matmul."""
    rng = np.random.default_rng(5)
    for case, width in (("diagonal", 9), ("mlp", 10)):
        probe = rng.standard_normal((4, width))
        engine, oracle, *_ = _engines(case, probe=probe)
        engine.advance(5)
        oracle.advance(5)
        for g, w in zip(engine.outputs("probe"), oracle.outputs("probe"), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_metrics_are_stable_at_huge_margins(stub):
    """log L stays finite where L underflows to 0 (margins of 1e4: the late phase), and matches refimpl."""
    from dichotomy.kernels.cupy.engines import ENGINE

    rng = np.random.default_rng(4)
    X = rng.choice(np.array([-1, 1], np.int8), size=(20, 5))
    y = X[:, 0].astype(np.float64)  # separable by w = e_0
    for loss in ("logistic", "exponential"):
        ds = Dataset(X[:12], y[:12], X[12:], y[12:], loss, {})
        configs = [diagonal_net.Config(d=5, alpha=1.0, L=2), diagonal_net.Config(d=5, alpha=1.0, L=3)]
        big = {"u": np.array([100.0, 0.1, 0.0, 0.0, 0.2]), "v": np.array([0.0, 0.0, 0.3, 0.0, 0.0])}
        runs = [RunSpec(c, big, 0.1, 0.0) for c in configs]
        got, want = ENGINE(diagonal_net, runs, ds).metrics(), ReferenceEngine(diagonal_net, runs, ds).metrics()
        assert all(math.isfinite(m["train_log_loss"]) and m["train_log_loss"] < -1e3 for m in got)
        assert all(m["train_loss"] == 0.0 for m in got)
        _assert_metrics(got, want, 1e-10)


def test_unsupported_data_is_refused_with_one_line_reasons():
    from dichotomy.kernels.cupy.engines import ENGINE

    rng = np.random.default_rng(0)
    module, configs, params, ds, lrs, wds = _diagonal(rng)
    runs = [RunSpec(c, p, lr, wd) for c, p, lr, wd in zip(configs, params, lrs, wds, strict=True)]
    real = Dataset(ds.X_train * 0.5, ds.y_train, ds.X_test, ds.y_test, ds.loss, {})
    assert "+-1 (int8)" in ENGINE.unsupported(module, runs, real, "float64", None)
    assert ENGINE.unsupported(module, runs, ds, "float16", None).startswith("its diagonal-net engine computes")
    assert "loss-normalized" in ENGINE.unsupported(module, runs, ds, "float64", LossNormalized(eta=1.0))
    module, configs, params, ds, lrs, wds = _mlp(rng)
    runs = [RunSpec(c, p, lr, wd) for c, p, lr, wd in zip(configs, params, lrs, wds, strict=True)]
    dense = Dataset(ds.X_train + 0.25, ds.y_train, ds.X_test, ds.y_test, ds.loss, {})
    assert "two-hot inputs only" in ENGINE.unsupported(module, runs, dense, "float64", None)
    binary = Dataset(ds.X_train, np.where(ds.y_train % 2 == 0, -1.0, 1.0), ds.X_test,
                     np.where(ds.y_test % 2 == 0, -1.0, 1.0), "logistic", {})
    assert "cross-entropy only" in ENGINE.unsupported(module, runs, binary, "float64", None)
    for reason in (ENGINE.unsupported(module, runs, dense, "float64", None),):
        assert "\n" not in reason
    with pytest.raises(errors.ConfigError, match="cupy backend cannot train this"):
        driver.run(module, configs[0], params[0], dense, lr=0.1, wd=0.0, steps=1, engine=ENGINE)


def test_launches_skip_empty_grids_and_refuse_non_contiguous_arrays(stub):
    kernels = cuda_modules.Kernels("relu_mlp", "float64", ("sgd_update",))
    p, g = stub.zeros(4), stub.zeros(4)
    loss, diverged = stub.zeros(1), stub.full(1, -1, np.int64)
    args = (p, g, np.uint64(4), np.float64(0.1), np.float64(0.0), loss, diverged)
    kernels.launch("sgd_update", (0,), (256,), args)
    assert stub.launches == []
    with pytest.raises(ValueError, match="argument 0 is not C-contiguous"):
        kernels.launch("sgd_update", (1,), (256,), (dev(np.zeros((4, 2)).T),) + args[1:])
    kernels.launch("sgd_update", (1,), (256,), args)
    assert [name for name, *_ in stub.launches] == ["sgd_update"]


def test_the_signature_check_catches_wrong_scalars_and_pointees(stub):
    """The checker itself: a 32-bit step counter, an int where size_t is declared, a float64 in a float kernel."""
    sig = signatures(sources.source("relu_mlp"))
    p, g, loss = stub.zeros(4), stub.zeros(4), stub.zeros(1)
    good = (p, g, np.uint64(4), np.float64(0.1), np.float64(0.0), loss, stub.full(1, -1, np.int64))
    check_launch("sgd_update", sig["sgd_update"], np.float64, (1,), (256,), good)
    for bad in (good[:6] + (stub.full(1, -1, np.int32),), good[:2] + (np.int32(4),) + good[3:], good[:6]):
        with pytest.raises(AssertionError):
            check_launch("sgd_update", sig["sgd_update"], np.float64, (1,), (256,), bad)
    with pytest.raises(AssertionError, match="float32"):
        check_launch("sgd_update", sig["sgd_update"], np.float32, (1,), (256,), good)


def test_the_cuda_loss_defines_are_the_one_table():
    from dichotomy.kernels.codes import LOSS_CODES

    text = (sources.HERE / "common.cuh").read_text()
    defines = {m[1].lower(): int(m[2]) for m in re.finditer(r"#define LOSS_(\w+) (\d+)", text)}
    assert defines == LOSS_CODES
