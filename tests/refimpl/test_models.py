"""Model identities: homogeneity, symmetry, zero output at the paper's inits, init conventions, input checks."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dichotomy import errors
from dichotomy.refimpl import diagonal_net, matrix_factorization, models, relu_mlp
from dichotomy.refimpl.params import param_norm
from tests.cases import any_case, factorization_cases
from tests.tolerances import tol


@given(any_case, st.floats(0.1, 10.0))
def test_outputs_are_L_homogeneous(case, c):
    """f(c theta) = c^L f(theta) with L the depth (2 for matrix factorization)."""
    model, config, params, X, _ = case
    L = models.degree(model, config)
    scaled = model.predict(config, {k: c * p for k, p in params.items()}, X)
    np.testing.assert_allclose(scaled, c**L * model.predict(config, params, X), rtol=tol("identity"),
                               atol=1e-12 * c**L)


@given(factorization_cases())
def test_factorization_is_symmetric(case):
    model, config, params, _, _ = case
    W = matrix_factorization.full_matrix(config, params)
    np.testing.assert_allclose(W, W.T, rtol=tol("identity"), atol=1e-13)
    X = np.stack(np.divmod(np.arange(config.d**2), config.d), axis=1)
    np.testing.assert_allclose(model.predict(config, params, X), W.ravel(), rtol=tol("identity"), atol=1e-13)


@pytest.mark.parametrize("d,alpha,L", [(1, 1.0, 2), (10, 128.0, 2), (1000, 3.0, 3)])
def test_diagonal_init_has_norm_alpha_and_zero_output(d, alpha, L):
    config = diagonal_net.Config(d=d, alpha=alpha, L=L)
    params = diagonal_net.init(config)
    assert param_norm(params) == pytest.approx(alpha, rel=1e-14)
    assert np.all(diagonal_net.predict(config, params, np.ones((3, d))) == 0)
    assert diagonal_net.alpha_from_per_coordinate(params["u"][0], d) == pytest.approx(alpha, rel=1e-14)


def test_factorization_init_is_alpha_identity_or_perturbed(rng):
    config = matrix_factorization.Config(d=5, alpha=10.0)
    params = matrix_factorization.init(config)
    np.testing.assert_array_equal(params["U"], 10 * np.eye(5))
    assert np.all(matrix_factorization.full_matrix(config, params) == 0)
    noisy = matrix_factorization.init(matrix_factorization.Config(d=200, alpha=10.0, sigma=0.1), rng)
    off = noisy["U"] - 10 * np.eye(200)
    assert np.std(off) == pytest.approx(0.1, rel=0.02)
    assert not np.array_equal(noisy["U"], noisy["V"])
    with pytest.raises(errors.ConfigError, match="rng"):
        matrix_factorization.init(matrix_factorization.Config(d=2, alpha=1.0, sigma=0.1))


def test_mlp_he_init_statistics_and_zero_last_layer(rng):
    config = relu_mlp.Config(D=194, h=1024, out=97, L=3, init_scale=2.0)
    params = relu_mlp.init(config, rng)
    assert list(params) == ["W1", "b1", "W2", "W3"]
    assert {k: p.shape for k, p in params.items()} == {"W1": (1024, 194), "b1": (1024,), "W2": (1024, 1024),
                                                       "W3": (97, 1024)}
    assert np.std(params["W1"]) == pytest.approx(2 * math.sqrt(2 / 194), rel=0.01)  # relu gain
    assert np.std(params["W2"]) == pytest.approx(2 * math.sqrt(2 / 1024), rel=0.01)
    assert np.std(params["W3"]) == pytest.approx(2 * math.sqrt(1 / 1024), rel=0.01)  # linear gain
    assert np.all(params["b1"] == 0)
    zeroed = relu_mlp.init(relu_mlp.Config(D=4, h=8, out=3, zero_last_layer=True), rng)
    assert np.all(relu_mlp.predict(relu_mlp.Config(D=4, h=8, out=3), zeroed, rng.standard_normal((5, 4))) == 0)


def test_paper_mlp_init_norm_matches_figure_2a(rng):
    """Fig. 2a starts at ||theta|| = 46.3 = sqrt(2048 + 97) (docs/paper.md §3.2)."""
    params = relu_mlp.init(relu_mlp.Config(D=194, h=1024, out=97), rng)
    assert param_norm(params) == pytest.approx(math.sqrt(2048 + 97), rel=0.01)


def test_relu_derivative_at_zero_is_zero_as_in_pytorch():
    config = relu_mlp.Config(D=2, h=3, out=2)
    params = {"W1": np.zeros((3, 2)), "b1": np.zeros(3), "W2": np.ones((2, 3))}
    _, grads = relu_mlp.loss_and_grad(config, params, np.ones((1, 2)), np.array([0]), "cross_entropy")
    assert np.all(grads["W1"] == 0) and np.all(grads["b1"] == 0)


@pytest.mark.parametrize("module,config,X,match", [
    (diagonal_net, diagonal_net.Config(d=3, alpha=1.0), np.ones((2, 4)), "3"),
    (diagonal_net, diagonal_net.Config(d=3, alpha=1.0), np.array([[1.0, np.nan, 0.0]]), "NaN"),
    (matrix_factorization, matrix_factorization.Config(d=3, alpha=1.0), np.array([[0, 3]]), "index"),
    (matrix_factorization, matrix_factorization.Config(d=3, alpha=1.0), np.array([[0.0, 1.0]]), "integer"),
    (relu_mlp, relu_mlp.Config(D=2, h=2, out=2), np.ones(2), "2-dimensional"),
])
def test_bad_inputs_raise_one_line_errors(module, config, X, match):
    with pytest.raises(errors.ConfigError, match=match) as info:
        module.check_inputs(config, X)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("make", [
    lambda: diagonal_net.Config(d=0, alpha=1.0), lambda: diagonal_net.Config(d=3, alpha=1.0, L=1),
    lambda: diagonal_net.Config(d=3, alpha=-1.0), lambda: relu_mlp.Config(D=2, h=0, out=2),
    lambda: matrix_factorization.Config(d=3, alpha=1.0, sigma=float("nan")),
])
def test_bad_configs_raise(make):
    with pytest.raises(errors.ConfigError):
        make()
