"""Bad input to the model interface (docs/user-guide.md, "The model interface") is a one-line ConfigError.

predict, loss_and_grad, jvp and ntk_features check their params, inputs, targets and tangent; forward and
backward are the unchecked per-step path, and the checked functions give exactly its numbers on valid input.
"""

import numpy as np
import pytest
from hypothesis import given, settings

from dichotomy.errors import ConfigError
from dichotomy.refimpl import data, diagonal_net, losses, matrix_factorization, relu_mlp
from dichotomy.run import driver
from tests.cases import any_case

MODELS = ("diagonal-net", "matrix-completion", "relu-mlp")
FUNCTIONS = ("predict", "loss_and_grad", "jvp", "ntk_features")


def setup(name):
    """(module, config, params, X, y, loss) of a small valid case, and the model's bad inputs [(X, match)]."""
    rng = np.random.default_rng(7)
    if name == "diagonal-net":
        config = diagonal_net.Config(d=3, alpha=1.0)
        X = rng.standard_normal((5, 3))
        return (diagonal_net, config, {"u": rng.standard_normal(3), "v": rng.standard_normal(3)}, X,
                np.array([1.0, -1.0, 1.0, 1.0, -1.0]), "logistic"), \
            [(X[:, :1], "1 columns but the diagonal net has d=3"), (np.where(X > 0, np.nan, X), "NaN")]
    if name == "matrix-completion":
        config = matrix_factorization.Config(d=4, alpha=1.0)
        X = np.array([[0, 1], [2, 3], [3, 3]])
        return (matrix_factorization, config, {"U": rng.standard_normal((4, 4)), "V": rng.standard_normal((4, 4))},
                X, np.array([0.5, -1.0, 2.0]), "squared"), \
            [(np.array([[0, -1]]), r"index pairs must lie in \[0, 4\)"), (np.array([[0, 4]]), r"in \[0, 4\)"),
             (X.astype(float), "integer index pairs")]
    config = relu_mlp.Config(D=3, h=4, out=3)
    X = rng.standard_normal((5, 3))
    return (relu_mlp, config, relu_mlp.init(config, rng), X, np.array([0, 2, 1, 1, 0]), "cross_entropy"), \
        [(X[:, :2], "2 columns but the MLP has input width D=3"), (X[0], "2-dimensional")]


def call(function, module, config, params, X, y, loss, tangent=None):
    if function == "loss_and_grad":
        return module.loss_and_grad(config, params, X, y, loss)
    if function == "jvp":
        return module.jvp(config, params, X, params if tangent is None else tangent)
    return getattr(module, function)(config, params, X)


def raises(match, fn, *args, **kwargs):
    with pytest.raises(ConfigError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)


# --- Config fields ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda: relu_mlp.Config(D=4, h=3, out=2, zero_last_layer="false"), "zero_last_layer must be True or False"),
    (lambda: relu_mlp.Config(D=4, h=3, out=2, zero_last_layer=1), "zero_last_layer must be True or False"),
    (lambda: relu_mlp.Config(D=4, h=3, out=2, init_scale="2"), "init_scale must be a number"),
    (lambda: diagonal_net.Config(d=3, alpha="1.0"), "alpha must be a number"),
    (lambda: matrix_factorization.Config(d=3, alpha=1.0, sigma="0.1"), "sigma must be a number"),
    (lambda: matrix_factorization.Config(d=3, alpha=np.bool_(True)), "alpha must be a number"),
])
def test_config_fields_are_type_checked(make, match):
    raises(match, make)


def test_configs_take_numpy_scalars_and_real_bools():
    assert diagonal_net.Config(d=np.int64(3), alpha=np.float64(2.0)).alpha == 2.0
    assert matrix_factorization.Config(d=3, alpha=1, sigma=0).sigma == 0
    assert relu_mlp.Config(D=2, h=2, out=2, zero_last_layer=True).zero_last_layer is True


# --- params, tangent, X, config ---------------------------------------------------------------------------------

def _bad_params(params):
    first = next(iter(params))
    return [
        ({k: v for k, v in params.items() if k != first}, f"params must have exactly the keys .*; missing {first}"),
        ({**params, "w": params[first]}, "unexpected w"),
        ({**params, first: params[first][..., :1]}, f"params\\['{first}'\\] has shape"),
        ({**params, first: np.full_like(params[first], np.nan)}, f"params\\['{first}'\\] contains NaN or inf"),
        ({**params, first: np.full(params[first].shape, "a")}, f"params\\['{first}'\\] must hold numbers"),
        (list(params.values()), "params must be a dict"),
    ]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("name", MODELS)
def test_bad_params_raise(name, function):
    (module, config, params, X, y, loss), _ = setup(name)
    for bad, match in _bad_params(params):
        raises(match, call, function, module, config, bad, X, y, loss, tangent=params)


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("name", MODELS)
def test_bad_inputs_raise(name, function):
    (module, config, params, X, y, loss), bad_inputs = setup(name)
    for bad, match in bad_inputs:
        raises(match, call, function, module, config, params, bad, y[:len(bad)], loss)


@pytest.mark.parametrize("name", MODELS)
def test_bad_tangents_raise(name):
    (module, config, params, X, y, loss), _ = setup(name)
    first = next(iter(params))
    for tangent, match in [({k: np.ones(1) for k in params}, f"tangent\\['{first}'\\] has shape"),
                           ({first: params[first]}, "tangent must have exactly the keys"),
                           ({**params, first: params[first] * np.inf}, "tangent.* contains NaN or inf")]:
        raises(match, module.jvp, config, params, X, tangent)


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("name", MODELS)
def test_another_models_config_is_refused(name, function):
    (module, config, params, X, y, loss), _ = setup(name)
    other = relu_mlp.Config(D=3, h=4, out=3) if module is not relu_mlp else diagonal_net.Config(d=3, alpha=1.0)
    raises(f"config must be a {module.NAME} Config", call, function, module, other, params, X, y, loss)


# --- targets ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,y,loss,match", [
    ("diagonal-net", "short", "logistic", "5 outputs but 1 targets"),
    ("diagonal-net", np.full(5, 3.0), "logistic", r"labels in \{-1, \+1\}"),
    ("diagonal-net", np.zeros(5), "exponential", r"labels in \{-1, \+1\}"),
    ("diagonal-net", np.zeros(5, int), "cross_entropy", "at least 2 outputs .* use the logistic loss"),
    ("matrix-completion", "short", "squared", "3 outputs but 1 targets"),
    ("matrix-completion", np.array([1.0, np.nan, 0.0]), "squared", "finite targets"),
    ("matrix-completion", np.array([1.0, 0.0, -1.0]), "logistic", r"labels in \{-1, \+1\}"),
    ("relu-mlp", np.array([0, 2, 1, 1, -1]), "cross_entropy", r"class labels in \[0, 3\)"),
    ("relu-mlp", np.array([0, 2, 1, 1, 3]), "cross_entropy", r"class labels in \[0, 3\)"),
    ("relu-mlp", np.array([0.0, 2.0, 1.0, 1.0, 0.0]), "cross_entropy", "integer class labels"),
    ("relu-mlp", "short", "cross_entropy", "5 outputs but 1 targets"),
])
def test_bad_targets_raise(name, y, loss, match):
    (module, config, params, X, y_ok, _), _ = setup(name)
    raises(match, module.loss_and_grad, config, params, X, y_ok[:1] if isinstance(y, str) else y, loss)


def test_cross_entropy_on_a_one_output_mlp_says_what_to_do(rng):
    config = relu_mlp.Config(D=3, h=4, out=1)
    raises("cross_entropy needs at least 2 outputs .* but the model has 1: use the logistic loss",
           relu_mlp.loss_and_grad, config, relu_mlp.init(config, rng), np.ones((2, 3)), np.array([0, 0]),
           "cross_entropy")
    raises("at least 2 outputs", losses.check_targets, "cross_entropy", (2,), np.array([0, 0]))


def test_an_unhashable_loss_name_is_an_unknown_loss():
    raises("unknown loss", losses.task_of, ["logistic"])


# --- valid input: the checked functions give exactly the unchecked path's numbers --------------------------------

@settings(deadline=None, max_examples=30)
@given(any_case)
def test_valid_input_gives_the_unchecked_numbers(case):
    module, config, params, X, rng = case
    f, cache = module.forward(config, params, X)
    np.testing.assert_array_equal(module.predict(config, params, X), f)
    if module is relu_mlp and config.out > 1:
        y, loss = rng.integers(0, config.out, X.shape[0]), "cross_entropy"
    else:
        y, loss = rng.choice([-1.0, 1.0], X.shape[0]), "logistic"
    value, g = losses.value_and_grad(loss, f, y)
    want = module.backward(config, params, cache, g)
    got_value, got = module.loss_and_grad(config, params, X, y, loss)
    assert got_value == value
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    tangent = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    J = module.ntk_features(config, params, X)
    flat = np.concatenate([tangent[k].ravel() for k in params])
    np.testing.assert_allclose(module.jvp(config, params, X, tangent), J @ flat, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_float32_and_complex_params_keep_their_dtype(name):
    """Complex-step derivatives and float32 evaluations go through predict unchanged."""
    (module, config, params, X, _, _), _ = setup(name)
    for dtype in (np.float32, np.complex128):
        p = {k: v.astype(dtype) for k, v in params.items()}
        got = module.predict(config, p, X)
        assert got.dtype == module.forward(config, p, X)[0].dtype
        np.testing.assert_array_equal(got, module.forward(config, p, X)[0])


# --- datasets ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,match", [(-1, "seed must be an integer >= 0"), (1.5, "seed"), ("0", "seed"),
                                        (True, "seed")])
def test_make_checks_the_seed(seed, match):
    raises(match, data.make, "modular_arithmetic", seed, p=5)


@pytest.mark.parametrize("a,b,match", [
    ([5], [1], r"two_hot operands must lie in \[0, p=5\), got a"), ([7], [1], r"\[0, p=5\)"),
    ([0], [-1], r"\[0, p=5\), got b"), ([0.0], [1], "integer"), ([0, 1], [1], "as many a as b"),
])
def test_two_hot_checks_its_operands(a, b, match):
    raises(match, data.two_hot, np.array(a), np.array(b), 5)


def test_a_dataset_of_lists_trains_like_one_of_arrays():
    ds = data.l2_separated_gaussians(np.random.default_rng(0), d=3, n_train=8, n_test=4)
    listed = data.Dataset(ds.X_train.tolist(), ds.y_train.tolist(), ds.X_test.tolist(), ds.y_test.tolist(), ds.loss)
    assert all(isinstance(getattr(listed, k), np.ndarray) for k in ("X_train", "y_train", "X_test", "y_test"))
    config = diagonal_net.Config(d=3, alpha=1.0)
    want, got = (driver.run(diagonal_net, config, diagonal_net.init(config), d, lr=0.1, wd=0.0, steps=3)
                 for d in (ds, listed))
    for k in want.metrics:
        np.testing.assert_array_equal(got.metrics[k], want.metrics[k])


def test_recording_does_not_call_the_checked_predict(monkeypatch):
    """The engine records on checked state through forward, so more record steps mean no more predict calls."""
    ds = data.l2_separated_gaussians(np.random.default_rng(0), d=3, n_train=8, n_test=4)
    config = diagonal_net.Config(d=3, alpha=1.0)
    calls = []
    checked = diagonal_net.predict
    monkeypatch.setattr(diagonal_net, "predict", lambda *a: calls.append(1) or checked(*a))
    counts = []
    for record in ([0], list(range(11))):
        calls.clear()
        driver.run(diagonal_net, config, diagonal_net.init(config), ds, lr=0.1, wd=0.0, steps=10, record=record)
        counts.append(len(calls))
    assert counts[0] == counts[1]
