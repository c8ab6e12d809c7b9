"""Hand-written backward passes against complex-step and central-difference derivatives (docs/math.md §2-§4)."""

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from dichotomy.refimpl import blocks, diagonal_net, losses, matrix_factorization, relu_mlp
from tests.cases import diagonal_cases, factorization_cases, inner, mlp_cases, random_like
from tests.tolerances import tol

H = 1e-30  # complex step: no cancellation, so the step can be tiny


def complex_step(fn, params, direction):
    """d/dh fn(params + h direction) at 0, as Im fn(params + i H direction) / H."""
    return np.imag(fn({k: p + 1j * H * direction[k] for k, p in params.items()})) / H


def check_vjp_complex_step(case):
    model, config, params, X, rng = case
    g = rng.standard_normal(model.predict(config, params, X).shape)
    direction = random_like(params, rng)
    grads = model.backward(config, params, model.forward(config, params, X)[1], g)
    assert set(grads) == set(params) and all(grads[k].shape == params[k].shape for k in params)
    expected = complex_step(lambda p: np.sum(g * model.predict(config, p, X)), params, direction)
    assert inner(grads, direction) == pytest.approx(expected, rel=tol("complex_step"), abs=1e-13)


@given(diagonal_cases())
@example((diagonal_net, diagonal_net.Config(d=1, alpha=1.0), {"u": np.ones(1), "v": np.ones(1)},
          np.ones((1, 1)), np.random.default_rng(0)))
def test_diagonal_net_vjp_equals_complex_step(case):
    """docs/math.md §2.1."""
    check_vjp_complex_step(case)


@given(factorization_cases())
def test_matrix_factorization_vjp_equals_complex_step(case):
    """docs/math.md §3.1, including repeated and diagonal index pairs."""
    check_vjp_complex_step(case)


@given(st.one_of(diagonal_cases(), factorization_cases()))
def test_squared_loss_gradient_equals_complex_step(case):
    """The whole loss_and_grad (forward, loss, backward) for analytic models under the squared loss."""
    model, config, params, X, rng = case
    y = rng.standard_normal(X.shape[0])
    value, grads = model.loss_and_grad(config, params, X, y, "squared")
    direction = random_like(params, rng)
    expected = complex_step(lambda p: np.mean((model.predict(config, p, X) - y) ** 2), params, direction)
    assert inner(grads, direction) == pytest.approx(expected, rel=tol("complex_step"), abs=1e-13)


@given(mlp_cases())
@example((relu_mlp, relu_mlp.Config(D=1, h=1, out=1), {"W1": np.ones((1, 1)), "b1": np.ones(1),
          "W2": np.ones((1, 1))}, np.ones((1, 1)), np.random.default_rng(0)))
def test_relu_mlp_gradient_equals_central_difference(case):
    """docs/math.md §4.1: cross-entropy (or squared, for one output) loss, pre-activations away from 0."""
    model, config, params, X, rng = case
    eps = 1e-6
    direction = random_like(params, rng)
    _, (_, pre) = model.forward(config, params, X)
    # ReLU is not differentiable at 0: keep every pre-activation further from 0 than a step can move it.
    assume(all(np.min(np.abs(z)) > 1e-3 for z in pre))
    loss, y = (("cross_entropy", rng.integers(0, config.out, X.shape[0])) if config.out > 1
               else ("squared", rng.standard_normal((X.shape[0], 1))))
    _, grads = model.loss_and_grad(config, params, X, y, loss)

    def at(t):
        shifted = {k: p + t * direction[k] for k, p in params.items()}
        return losses.value_and_grad(loss, model.predict(config, shifted, X), y)[0]

    fd = (at(eps) - at(-eps)) / (2 * eps)
    assert inner(grads, direction) == pytest.approx(fd, rel=tol("central_difference"), abs=1e-9)


def _naive(loss, f, y):
    """The textbook formulas, analytic (complex-step friendly) at moderate margins."""
    if loss == "logistic":
        return np.mean(np.log(1 + np.exp(-y * f)))
    if loss == "exponential":
        return np.mean(np.exp(-y * f))
    if loss == "squared":
        return np.mean((f - y) ** 2)
    rows = np.arange(f.shape[0])
    return np.mean(np.log(np.sum(np.exp(f), axis=1)) - f[rows, y])


@pytest.mark.parametrize("loss", ["logistic", "exponential", "squared", "cross_entropy"])
@given(n=st.integers(1, 7), C=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_loss_derivative_equals_complex_step(loss, n, C, seed):
    """docs/math.md §1.1: the value and dL/df of each loss against the naive formula."""
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        f, y = 5 * rng.standard_normal((n, C)), rng.integers(0, C, n)
    else:
        f = 5 * rng.standard_normal(n)
        y = rng.standard_normal(n) if loss == "squared" else rng.choice([-1.0, 1.0], n)
    value, g = losses.value_and_grad(loss, f, y)
    assert value == pytest.approx(_naive(loss, f, y), rel=1e-13)
    direction = rng.standard_normal(f.shape)
    expected = np.imag(_naive(loss, f + 1j * H * direction, y)) / H
    assert np.sum(g * direction) == pytest.approx(expected, rel=tol("complex_step"), abs=1e-15)


@pytest.mark.parametrize("model_cases", [diagonal_cases(), factorization_cases(), mlp_cases()],
                         ids=["diagonal", "factorization", "mlp"])
def test_ntk_features_are_the_jacobian(model_cases):
    """J^T g (from ntk_features) equals the backward pass for every upstream g: the features are the Jacobian."""

    @given(model_cases)
    def check(case):
        model, config, params, X, rng = case
        J = model.ntk_features(config, params, X)
        f = model.predict(config, params, X)
        g = rng.standard_normal(f.shape)
        flat = np.concatenate([a.ravel() for a in model.backward(config, params,
                                                                model.forward(config, params, X)[1], g).values()])
        via_J = np.tensordot(g, J, axes=g.ndim)
        np.testing.assert_allclose(via_J, flat, rtol=tol("identity"), atol=1e-12)

    check()


@pytest.mark.parametrize("block", [1 << 21, 10], ids=["one-block", "many-blocks"])
def test_diagonal_net_backward_reads_int8_inputs_exactly(rng, monkeypatch, block):
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block)  # 10 elements: 2 rows a block, 4 blocks
    config = diagonal_net.Config(d=5, alpha=1.0)
    params = {"u": rng.standard_normal(5), "v": rng.standard_normal(5)}
    X8 = rng.choice(np.array([-1, 1], dtype=np.int8), size=(7, 5))
    g = rng.standard_normal(7)
    np.testing.assert_array_equal(diagonal_net.predict(config, params, X8),
                                  diagonal_net.predict(config, params, X8.astype(np.float64)))
    a = diagonal_net.backward(config, params, X8, g)
    b = diagonal_net.backward(config, params, X8.astype(np.float64), g)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-15)


def test_matrix_factorization_gradient_only_touches_observed_rows(rng):
    config = matrix_factorization.Config(d=6, alpha=1.0)
    params = {"U": rng.standard_normal((6, 6)), "V": rng.standard_normal((6, 6))}
    X = np.array([[0, 1], [1, 0], [2, 2]])
    grads = matrix_factorization.backward(config, params, X, np.ones(3))
    assert np.all(grads["U"][3:] == 0) and np.any(grads["U"][:3] != 0)


@given(mlp_cases())
def test_relu_mlp_jacobian_equals_central_differences_of_the_forward_pass(case):
    """ntk_features (built from backward) against finite differences of predict alone, one random direction:
    J t = (f(theta + eps t) - f(theta - eps t)) / (2 eps), every output. Pre-activations kept away from 0."""
    model, config, params, X, rng = case
    _, (_, pre) = model.forward(config, params, X)
    assume(all(np.min(np.abs(z)) > 1e-3 for z in pre))
    direction = random_like(params, rng)
    eps = 1e-6

    def at(t):
        return model.predict(config, {k: p + t * direction[k] for k, p in params.items()}, X)

    fd = (at(eps) - at(-eps)) / (2 * eps)
    flat = np.concatenate([direction[k].ravel() for k in relu_mlp.shapes(config)])
    Jt = model.ntk_features(config, params, X) @ flat
    np.testing.assert_allclose(Jt, fd, rtol=tol("central_difference"), atol=1e-8)
