"""Every backend against the float64 oracle: one test body, a fixture supplies the backend (docs/architecture.md).

Runs are compared over sparse record schedules, so each engine call fuses many steps: long gaps, gaps of odd and
even length, gaps that straddle the CuPy completion graph's 64 steps. Batches mix configs (depth, alpha, lr, wd)
and are compared with the same runs trained one at a time. ``numpy`` is the reference engine itself, so its rows
check the driver (a batch of the reference against single runs of it); ``cupy`` is listed and skipped, visibly,
without a GPU.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from dichotomy import errors
from dichotomy.kernels import BackendUnavailable, get_backend
from dichotomy.refimpl import data, diagonal_net, matrix_factorization, relu_mlp
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.engine import RunSpec
from dichotomy.run import driver
from tests.cases import seeds
from tests.patience import patience
from tests.tolerances import tol

# Sparse record schedules: each gap is advanced in fused multi-step calls (the driver may split a gap into
# chunks, never merge two). Odd and even gaps, a gap of 1, gaps around 64 (the CUDA graph length), and a
# schedule that stops before the last step (the rest is advanced unrecorded).
SCHEDULES = {
    "odd-even": [0, 1, 2, 5, 9, 16, 63, 64, 65, 129, 194, 300],
    "long-gaps": [0, 137, 300],
    "ends-early": [0, 3, 70],
}
STEPS = 300


def _backend_or_skip(name):
    try:
        return get_backend(name)
    except BackendUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(params=["numpy", "numba", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    return _backend_or_skip(request.param)


def _diagonal_data(rng, kind, d, n, loss):
    X = rng.choice(np.array([-1, 1], np.int8), size=(n + 5, d))
    if kind == "diagonal-float":
        X = rng.standard_normal((n + 5, d))
    y = np.where(rng.random(n + 5) < 0.5, -1.0, 1.0) if loss != "squared" else rng.standard_normal(n + 5)
    return Dataset(X[:n], y[:n], X[n:], y[n:], loss, {})


@st.composite
def problems(draw):
    """A small problem of any model: (module, dataset, make_config() -> config, init(config) -> params).

    Step sizes come from :func:`_stable_lr`: these tests compare trajectories at rounding level, which only
    means something where GD is not chaotic (see there).
    """
    rng = np.random.default_rng(draw(seeds))
    kind = draw(st.sampled_from(["diagonal-int8", "diagonal-float", "completion", "mlp-two-hot", "mlp-dense",
                                 "mlp-binary"]))
    if kind.startswith("diagonal"):
        d, n = draw(st.integers(1, 40)), draw(st.integers(1, 12))
        ds = _diagonal_data(rng, kind, d, n, draw(st.sampled_from(["logistic", "exponential", "squared"])))
        return (diagonal_net, ds, lambda: diagonal_net.Config(d=d, alpha=draw(st.floats(0.5, 4.0)),
                                                              L=draw(st.integers(2, 3))),
                lambda c: diagonal_net.init(c))
    if kind == "completion":
        ds = data.multiplication_table(rng, d=draw(st.integers(3, 12)), train_fraction=draw(st.floats(0.3, 0.7)))
        return (matrix_factorization, ds,
                lambda: matrix_factorization.Config(d=ds.info["d"], alpha=draw(st.floats(0.5, 2.0)), sigma=0.1),
                lambda c: matrix_factorization.init(c, rng))
    if kind == "mlp-two-hot":
        ds = data.modular_arithmetic(rng, p=draw(st.integers(3, 7)), train_fraction=0.5)
    elif kind == "mlp-binary":  # one output and a binary loss: outputs (n, 1) against labels (n,)
        n, D = draw(st.integers(1, 10)), draw(st.integers(1, 5))
        X, y = rng.standard_normal((n + 4, D)), np.where(rng.random(n + 4) < 0.5, -1.0, 1.0)
        ds = Dataset(X[:n], y[:n], X[n:], y[n:], draw(st.sampled_from(["logistic", "exponential"])), {})
    else:
        n, D, out = draw(st.integers(1, 10)), draw(st.integers(1, 5)), draw(st.integers(2, 4))
        X, y = rng.standard_normal((n + 4, D)), rng.permutation(np.arange(n + 4) % out)  # every class occurs
        ds = Dataset(X[:n], y[:n], X[n:], y[n:], "cross_entropy", {})
    h = draw(st.integers(1, 16))
    return (relu_mlp, ds,
            lambda: relu_mlp.config_for(ds, h=h, L=draw(st.integers(2, 3)), init_scale=draw(st.floats(0.5, 2.0)),
                                        zero_last_layer=draw(st.booleans())),
            lambda c: relu_mlp.init(c, rng))


def _stable_lr(module, config, lr):
    """``lr`` scaled down by the model's curvature at init, ~ init_scale^(2(L-1)) for a degree-L model.

    At a large init scale and a fixed lr, GD trains at the edge of stability: the loss oscillates and rounding
    differences (one BLAS against another, FMA or not) grow ~1e13-fold in 150 steps, so two correct engines
    disagree at 1e-1 (seen on CI for an MLP at L=3, init_scale=2, lr=0.03, and for diagonal nets at alpha=3,
    L=3 with the squared loss). With this lr they agree to ~1e-15 and the loss still falls several-fold.
    """
    return lr / max(1.0, module.init_scale(config)) ** (2 * (module.degree(config) - 1))


def _takes(backend, module, ds, config) -> bool:
    """Whether the backend takes this model, data and config (the cupy engines take fewer data kinds)."""
    return backend.unsupported(module, [RunSpec(config, {}, 0.1, 0.0)], ds) is None


def _compare(got, want, rtol):
    np.testing.assert_array_equal(got.steps, want.steps)
    assert got.status == want.status
    # A loss that has converged to rounding level (a fitted regression reaches 1e-32) is compared against the
    # scale of its own curve, and its logarithm only where the loss is still above that level.
    fitted = want.metrics["train_loss"] < 1e-12 * want.metrics["train_loss"].max(initial=0)
    for k in want.metrics:
        g, w = got.metrics[k], want.metrics[k]
        if k.endswith("acc"):  # an output within rounding of 0 may flip one sample...
            rows = np.ones(len(w), bool)
            if k == "test_acc" and want.outputs is not None and len(want.outputs) == len(w):
                # ...and where every output is (a net still at w = 0: ties, counted 1/2), every sample may flip
                rows = np.abs(want.outputs.reshape(len(w), -1)).max(axis=1) > 1e-9
            np.testing.assert_allclose(g[rows], w[rows], atol=0.25, err_msg=k)
        elif k == "train_log_loss":
            np.testing.assert_allclose(g[~fitted], w[~fitted], rtol=rtol, err_msg=k)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w[np.isfinite(w)]).max(initial=0),
                                       err_msg=k)
    for k in want.params:
        scale = max(np.abs(want.params[k]).max(initial=0), 1e-12)
        np.testing.assert_allclose(got.params[k], want.params[k], rtol=0, atol=rtol * scale, err_msg=k)
    if want.outputs is not None:
        scale = max(np.abs(want.outputs).max(initial=0), 1e-12)
        np.testing.assert_allclose(got.outputs, want.outputs, rtol=0, atol=rtol * scale)


def _reference(module, config, params, ds, **kwargs):
    """The oracle's trajectory, or the TrainingDiverged it raised."""
    try:
        return driver.run(module, config, params, ds, **kwargs)
    except errors.TrainingDiverged as stop:
        return stop


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_backend_matches_the_oracle_over_fused_steps(backend, schedule):
    """Every metric, parameter and probe output within the float64 backend tolerance of the oracle."""
    rtol = tol("backend", np.float64)

    @settings(max_examples=12)
    @given(problems())
    def check(problem):
        module, ds, make_config, init = problem
        config = make_config()
        if not _takes(backend, module, ds, config):
            reject()
        params = init(config)
        kwargs = dict(lr=_stable_lr(module, config, 0.05), wd=0.01, steps=STEPS, record=SCHEDULES[schedule],
                      probe=ds.X_test)
        want = _reference(module, config, params, ds, **kwargs)
        if isinstance(want, errors.TrainingDiverged):
            with pytest.raises(errors.TrainingDiverged) as stop:
                backend.run(module, config, params, ds, **kwargs)
            assert stop.value.step == want.step
            return
        _compare(backend.run(module, config, params, ds, **kwargs), want, rtol)

    check()


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])  # the backend is stateless
@given(problems(), st.integers(2, 4), seeds)
def test_a_batch_of_heterogeneous_runs_equals_the_runs_one_by_one(backend, problem, B, seed):
    """Each run of a batch trains with its own config (depth, alpha, ...), init, lr and wd."""
    module, ds, make_config, init = problem
    rng = np.random.default_rng(seed)
    configs = [make_config() for _ in range(B)]
    if not all(_takes(backend, module, ds, c) for c in configs):
        reject()
    inits = [init(c) for c in configs]
    lrs = np.array([_stable_lr(module, c, 0.05 * rng.uniform(0.5, 1.0)) for c in configs])
    wds = 0.01 * rng.uniform(0.0, 1.5, B)
    record = SCHEDULES["odd-even"]
    got = backend.run_batch(module, configs, inits, ds, lr=lrs, wd=wds, steps=STEPS, record=record, probe=ds.X_test)
    for b in range(B):
        want = _reference(module, configs[b], inits[b], ds, lr=lrs[b], wd=wds[b], steps=STEPS, record=record,
                          probe=ds.X_test)
        assert got[b].config["batch"] == {"index": b, "size": B}
        assert got[b].config["model_config"] == vars(configs[b])
        if isinstance(want, errors.TrainingDiverged):
            assert got[b].status == "diverged" and got[b].config["diverged_at"] == want.step
            continue
        _compare(got[b], want, tol("backend", np.float64))


def test_batched_diagonal_nets_of_different_depths_train_each_at_its_own_depth(backend):
    """Regression: the numba batch once trained every run at the first run's depth (37% off at L = 3)."""
    ds = data.sparse_linear_classification(np.random.default_rng(5), d=40, n_train=16, n_test=8, k=3)
    configs = [diagonal_net.Config(d=40, alpha=2.0, L=2), diagonal_net.Config(d=40, alpha=3.0, L=3)]
    inits = [diagonal_net.init(c) for c in configs]
    got = backend.run_batch(diagonal_net, configs, inits, ds, lr=0.05, wd=0.01, steps=200, record=[0, 77, 200])
    for c, p, g in zip(configs, inits, got, strict=True):
        _compare(g, driver.run(diagonal_net, c, p, ds, lr=0.05, wd=0.01, steps=200, record=[0, 77, 200]),
                 tol("backend", np.float64))


@pytest.mark.parametrize("model", ["diagonal-net", "matrix-completion", "relu-mlp"])
def test_float32_engines_track_the_oracle_to_single_precision(backend, model):
    """Every model in float32 on the backends that claim it (documented drift: docs/benchmarks.md)."""
    rng = np.random.default_rng(1)
    if model == "diagonal-net":
        ds = data.sparse_linear_classification(rng, d=300, n_train=40, n_test=60, k=3)
        module, config = diagonal_net, diagonal_net.Config(d=300, alpha=8.0)
        params, lr, wd = diagonal_net.init(config), 0.05, 0.01
    elif model == "matrix-completion":
        ds = data.multiplication_table(rng, d=10, train_fraction=0.4)
        module, config = matrix_factorization, matrix_factorization.Config(d=10, alpha=1.0, sigma=0.1)
        params, lr, wd = matrix_factorization.init(config, rng), 0.1, 0.01
    else:
        ds = data.modular_arithmetic(rng, p=7, train_fraction=0.5)
        module, config = relu_mlp, relu_mlp.Config(D=14, h=16, out=7)
        params, lr, wd = relu_mlp.init(config, rng), 0.1, 0.001
    if backend.unsupported(module, [RunSpec(config, params, lr, wd)], ds, "float32") is not None:
        with pytest.raises(errors.ConfigError, match="float32|float64"):
            backend.run(module, config, params, ds, lr=lr, wd=wd, steps=1, dtype="float32")
        return
    want = driver.run(module, config, params, ds, lr=lr, wd=wd, steps=200, record=[0, 33, 200])
    got = backend.run(module, config, params, ds, lr=lr, wd=wd, steps=200, record=[0, 33, 200], dtype="float32")
    assert got.config["dtype"] == "float32"
    rtol = tol("backend", np.float32)
    np.testing.assert_allclose(got.metrics["train_loss"], want.metrics["train_loss"], rtol=rtol)
    for k in want.params:
        np.testing.assert_allclose(got.params[k], want.params[k], rtol=0, atol=rtol * np.abs(want.params[k]).max())


def test_divergence_names_the_same_step_as_the_oracle(backend):
    ds = data.multiplication_table(np.random.default_rng(2), d=6, train_fraction=0.5)
    config = matrix_factorization.Config(d=6, alpha=3.0)
    steps = {}
    for name, run in (("numpy", driver.run), (backend.name, backend.run)):
        with pytest.raises(errors.TrainingDiverged) as stop:
            run(matrix_factorization, config, matrix_factorization.init(config), ds, lr=5.0, wd=0.0, steps=200,
                record=[0, 100, 200])
        steps[name] = stop.value.step
        assert stop.value.trajectory.status == "diverged"
    assert steps["numpy"] == steps[backend.name]


@pytest.mark.parametrize("lr", [0.5, 1.2, 5.0])
def test_each_engine_names_the_exact_step_its_own_loss_stops_being_finite(backend, lr):
    """What holds on every engine, however the rounding moves a drifting divergence: one step before the named
    step its loss was finite, at the named step it is not (docs/user-guide.md)."""
    ds = data.multiplication_table(np.random.default_rng(2), d=6, train_fraction=0.5)
    config = matrix_factorization.Config(d=6, alpha=3.0)
    params = matrix_factorization.init(config)
    with pytest.raises(errors.TrainingDiverged) as stop:
        backend.run(matrix_factorization, config, params, ds, lr=lr, wd=0.0, steps=5000, record=[0])
    s = stop.value.step
    assert s >= 1
    before = backend.run(matrix_factorization, config, params, ds, lr=lr, wd=0.0, steps=s - 1, record=[s - 1])
    assert before.status == "completed" and np.isfinite(before.metrics["train_loss"][-1])
    with pytest.raises(errors.TrainingDiverged) as again:
        backend.run(matrix_factorization, config, params, ds, lr=lr, wd=0.0, steps=s, record=[0])
    assert again.value.step == s


def test_a_batch_isolates_a_diverging_run_and_checks_its_arguments(backend):
    ds = data.sparse_linear_classification(np.random.default_rng(4), d=30, n_train=12, n_test=8, k=3)
    config = diagonal_net.Config(d=30, alpha=2.0)
    inits = [diagonal_net.init(config)] * 3
    got = backend.run_batch(diagonal_net, config, inits, ds, lr=[0.05, 500.0, 0.05], wd=0.01, steps=100)
    assert [t.status for t in got] == ["completed", "diverged", "completed"]
    np.testing.assert_allclose(got[0].params["u"], got[2].params["u"], rtol=1e-14)  # BLAS rounds by column
    with pytest.raises(errors.ConfigError, match="sequence of 3"):
        backend.run_batch(diagonal_net, config, inits, ds, lr=[0.1, 0.1], wd=0.0, steps=1)
    with pytest.raises(errors.ConfigError, match="sequence of 3"):
        backend.run_batch(diagonal_net, [config, config], inits, ds, lr=0.1, wd=0.0, steps=1)


def test_engine_state_resumes_bit_for_bit(backend):
    """state() after k steps, loaded into a fresh engine, continues exactly as the uninterrupted engine."""
    rng = np.random.default_rng(6)
    for module, ds, config, params in (
            (diagonal_net, data.sparse_linear_classification(rng, d=20, n_train=8, n_test=4, k=3),
             diagonal_net.Config(d=20, alpha=2.0), None),
            (matrix_factorization, data.multiplication_table(rng, d=6, train_fraction=0.5),
             matrix_factorization.Config(d=6, alpha=1.0, sigma=0.1), None),
            (relu_mlp, data.modular_arithmetic(rng, p=5, train_fraction=0.5), relu_mlp.Config(D=10, h=6, out=5), None)):
        params = module.init(config, rng)
        if backend.unsupported(module, [RunSpec(config, params, 0.1, 0.0)], ds) is not None:
            continue
        runs = [RunSpec(config, params, 0.05, 0.01), RunSpec(config, params, 0.03, 0.0)]
        whole = backend.engine(module, runs, ds)
        whole.advance(13)
        half = backend.engine(module, runs, ds)
        half.advance(5)
        state = {k: np.array(v) for k, v in half.state().items()}
        resumed = backend.engine(module, runs, ds)
        resumed.load_state(state)
        resumed.advance(8)
        assert resumed.step == whole.step == 13
        for a, b in zip(resumed.params(), whole.params(), strict=True):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("h", [1, 5])
def test_backends_never_modify_the_initial_parameters(backend, h):
    ds = data.modular_arithmetic(np.random.default_rng(0), p=3, train_fraction=0.5)
    config = relu_mlp.Config(D=6, h=h, out=3)
    params = relu_mlp.init(config, np.random.default_rng(1))
    before = {k: v.copy() for k, v in params.items()}
    backend.run(relu_mlp, config, params, ds, lr=0.1, wd=0.0, steps=5)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_a_backend_refuses_what_it_does_not_support_in_one_line():
    numpy = get_backend("numpy")
    ds = data.modular_arithmetic(np.random.default_rng(0), p=3, train_fraction=0.5)
    config = relu_mlp.Config(D=6, h=2, out=3)
    params = relu_mlp.init(config, np.random.default_rng(1))
    with pytest.raises(errors.ConfigError, match="numpy backend cannot train this: .*float64 only"):
        numpy.run(relu_mlp, config, params, ds, lr=0.1, wd=0.0, steps=1, dtype="float32")
    with pytest.raises(errors.ConfigError, match="dtype must be one of"):
        numpy.run(relu_mlp, config, params, ds, lr=0.1, wd=0.0, steps=1, dtype="float16")
    numba = _backend_or_skip("numba")
    from dichotomy.refimpl.steppers import LossNormalized

    with pytest.raises(errors.ConfigError, match="numba backend cannot train this: .*loss-normalized"):
        numba.run(relu_mlp, config, params, ds, lr=0.1, wd=0.0, steps=1, schedule=LossNormalized(eta=0.1))
    complex_ds = Dataset(ds.X_train + 0j, ds.y_train, ds.X_test + 0j, ds.y_test, ds.loss, {})
    for b in (numpy, numba):
        with pytest.raises(errors.ConfigError, match="complex"):
            b.run(relu_mlp, config, params, complex_ds, lr=0.1, wd=0.0, steps=1)


@pytest.mark.parametrize("bad, match", [
    ({"U": np.eye(4), "V": np.eye(4)}, "shape"),                       # matrix of the wrong size
    ({"U": np.eye(3), "V": np.vstack([np.eye(3), np.ones(3)])}, "shape"),  # an extra row (numba used to segfault)
    ({"U": np.eye(3), "V": np.eye(3), "W": np.eye(3)}, "unexpected W"),
    ({"U": np.eye(3)}, "missing V"),
    ({"U": np.eye(3) + 1j, "V": np.eye(3)}, "real numbers"),
    ({"U": np.full((3, 3), np.nan), "V": np.eye(3)}, "NaN"),
])
def test_every_backend_validates_the_params_dict_once(backend, bad, match):
    ds = data.multiplication_table(np.random.default_rng(0), d=3, train_fraction=0.5)
    with pytest.raises(errors.ConfigError, match=match):
        backend.run(matrix_factorization, matrix_factorization.Config(d=3, alpha=1.0), bad, ds, lr=0.1, wd=0.0,
                    steps=2)


@example(n_train=0, n_test=3).via("an empty train set")
@example(n_train=3, n_test=0).via("an empty test set")
@given(st.integers(0, 3), st.integers(0, 3))
@settings(max_examples=5)
def test_empty_splits_are_refused_in_one_line(n_train, n_test):
    if n_train and n_test:
        return
    X = np.ones((n_train + n_test, 4), np.int8)
    y = np.ones(n_train + n_test)
    ds = Dataset(X[:n_train], y[:n_train], X[n_train:], y[n_train:], "logistic", {})
    config = diagonal_net.Config(d=4, alpha=1.0)
    for name in ("numpy", "numba"):
        with pytest.raises(errors.ConfigError, match="set is empty"):
            get_backend(name).run(diagonal_net, config, diagonal_net.init(config), ds, lr=0.1, wd=0.0, steps=1)


_CACHED_RUN = """
import sys
import numpy as np
from dichotomy.kernels.numba.diagonal_net import matvec
from dichotomy.kernels import get_backend
from dichotomy.refimpl import data, diagonal_net
if sys.argv[1] == "inner":  # cache only the parallel product, as a first evaluation would
    f = np.empty(3); matvec(np.ones((3, 4), np.int8), np.ones(4), f); print(f[0])
else:
    ds = data.sparse_linear_classification(np.random.default_rng(0), d=30, n_train=8, n_test=8, k=3)
    config = diagonal_net.Config(d=30, alpha=4.0)
    traj = get_backend("numba").run(diagonal_net, config, diagonal_net.init(config), ds, lr=0.01, wd=0.01, steps=5)
    print(traj.metrics["train_loss"][-1])
"""


@pytest.mark.slow
def test_numba_kernels_reload_from_the_cache_in_new_processes(tmp_path):
    """numba#8578: a cached function that calls a cached parallel one segfaults once loaded from the cache.
    Here: cache the parallel product alone, compile the training loop, then load everything in a new
    process, each in a fresh interpreter with its own cache directory."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    script = tmp_path / "cached_run.py"
    script.write_text(_CACHED_RUN)
    outputs = []
    for arg in ("inner", "train", "train"):
        done = subprocess.run([sys.executable, str(script), arg], env=env, capture_output=True, text=True,
                              cwd=os.getcwd(), timeout=patience(600))
        assert done.returncode == 0, f"{arg}: exit {done.returncode}\n{done.stderr[-2000:]}"
        outputs.append(done.stdout.strip())
    assert outputs[0] == "4.0" and outputs[1] == outputs[2]
    assert any((tmp_path / "cache").rglob("*.nbi"))


@pytest.mark.parametrize("n, d", [(37, 203), (8, 8), (1, 1000), (70, 5)])
def test_numba_diagonal_kernels_agree_on_pm1_data_bits_and_blocks(n, d):
    """+-1 data as int8 take the bit-table kernel, the same data as float64 the column-block kernel: both
    track the oracle, and the result does not depend on the thread count (fixed partial sums)."""
    import numba

    numba_backend = _backend_or_skip("numba")
    rng = np.random.default_rng(n * 1000 + d)
    X = rng.choice(np.array([-1, 1], np.int8), size=(n + 5, d))
    y = np.where(rng.random(n + 5) < 0.5, -1.0, 1.0)
    config = diagonal_net.Config(d=d, alpha=1.5, L=3)
    params = diagonal_net.init(config)
    kwargs = dict(lr=0.05, wd=0.01, steps=300, record=[0, 7, 300])
    runs = {}
    for kind, Xk in (("bits", X), ("blocks", X.astype(np.float64))):
        ds = Dataset(Xk[:n], y[:n], Xk[n:], y[n:], "logistic", {})
        runs[kind] = numba_backend.run(diagonal_net, config, params, ds, **kwargs)
        if kind == "bits":
            want = driver.run(diagonal_net, config, params, ds, **kwargs)
            previous = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                one_thread = numba_backend.run(diagonal_net, config, params, ds, **kwargs)
            finally:
                numba.set_num_threads(previous)
            for k in want.params:
                np.testing.assert_array_equal(one_thread.params[k], runs["bits"].params[k])
    for kind in runs:
        _compare(runs[kind], want, tol("backend", np.float64))
