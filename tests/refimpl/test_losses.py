"""Losses at extreme margins, log-space values, accuracy with ties, margins, label checks (docs/math.md §1)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dichotomy import errors
from dichotomy.refimpl import losses

RAISE = dict(over="raise", invalid="raise", divide="raise")  # underflow to 0 is the right float64 answer


@pytest.mark.parametrize("margin", [1e4, -1e4, 1e6, -1e6, 745.0, -745.0])
def test_logistic_is_finite_at_extreme_margins(margin):
    y = np.array([1.0, -1.0, 1.0])
    with np.errstate(**RAISE):
        value, g = losses.value_and_grad("logistic", margin * y, y)
        log_value = losses.log_value("logistic", margin * y, y)
    assert np.isfinite(value) and np.all(np.isfinite(g)) and np.isfinite(log_value)
    if margin > 0:  # log L = -margin + O(e^-margin): exact where L itself underflows to 0
        assert log_value == pytest.approx(-margin, rel=1e-12)
    else:
        assert value == pytest.approx(-margin, rel=1e-12)


@pytest.mark.parametrize("scale", [1.0, -1.0, 100.0])
def test_cross_entropy_is_finite_at_extreme_margins(scale):
    F = scale * np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]])
    y = np.array([0, 1])
    with np.errstate(**RAISE):
        value, g = losses.value_and_grad("cross_entropy", F, y)
        log_value = losses.log_value("cross_entropy", F, y)
    assert np.isfinite(value) and np.all(np.isfinite(g)) and np.isfinite(log_value)
    if scale > 0:  # mean of e^-m (row 0) and 2 e^-m (row 1, two rivals at gap m)
        assert log_value == pytest.approx(-1e4 * scale + np.log(1.5), rel=1e-12)


def test_exponential_loss_in_log_space_and_overflow():
    y = np.array([1.0, -1.0])
    with np.errstate(**RAISE):
        assert losses.log_value("exponential", -1e4 * y, y) == pytest.approx(1e4, rel=1e-12)
        value, g = losses.value_and_grad("exponential", 1e4 * y, y)
        assert value == 0 and np.all(g == 0)
        value, _ = losses.value_and_grad("exponential", -1e4 * y, y)  # e^1e4: no float64 holds it
    assert value == np.inf


@given(st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_log_value_is_log_of_value_at_moderate_margins(n, seed):
    rng = np.random.default_rng(seed)
    f, y = 3 * rng.standard_normal(n), rng.choice([-1.0, 1.0], n)
    F, c = 3 * rng.standard_normal((n, 4)), rng.integers(0, 4, n)
    for loss, out, target in (("logistic", f, y), ("exponential", f, y), ("cross_entropy", F, c),
                              ("squared", f, f + 1)):
        value, _ = losses.value_and_grad(loss, out, target)
        assert losses.log_value(loss, out, target) == pytest.approx(np.log(value), rel=1e-12, abs=1e-13)


def test_binary_accuracy_counts_ties_as_half():
    assert losses.accuracy("binary", np.array([1.0, 0.0, -2.0, 0.0]), np.array([1.0, 1.0, 1.0, -1.0])) == 0.5


def test_margins_and_normalized_margin():
    F = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    np.testing.assert_array_equal(losses.margins("multiclass", F, np.array([0, 1])), [2.0, -3.0])
    assert losses.normalized_margin("binary", np.array([2.0, -4.0]), np.array([1.0, -1.0]), 2.0, 2) == 0.5


@pytest.mark.parametrize("loss,shape,y,match", [
    ("logistic", (3,), np.array([1.0, 0.0, -1.0]), "-1, \\+1"),
    ("cross_entropy", (2, 3), np.array([0, 3]), "class labels"),
    ("cross_entropy", (2, 3), np.array([0.0, 1.0]), "class labels"),
    ("squared", (2,), np.array([1.0, np.inf]), "finite"),
    ("logistic", (3,), np.array([1.0, 1.0]), "lengths"),
    ("hinge", (2,), np.array([1.0, 1.0]), "unknown loss"),
])
def test_bad_targets_raise(loss, shape, y, match):
    with pytest.raises(errors.ConfigError, match=match):
        losses.check_targets(loss, shape, y)


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
def test_a_one_output_model_with_a_binary_loss_is_not_broadcast(loss):
    """Regression: a ReLU MLP with out = 1 gives f of shape (n, 1); y * f once broadcast to (n, n) (a 5-sample
    case returned 0.745 instead of 0.829) and backward raised. The loss is the per-sample formula on f[:, 0]."""
    from dichotomy.refimpl import relu_mlp

    rng = np.random.default_rng(3)
    config = relu_mlp.Config(D=4, h=6, out=1)
    params = relu_mlp.init(config, rng)
    X, y = rng.standard_normal((5, 4)), np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    f = relu_mlp.predict(config, params, X)
    assert f.shape == (5, 1)
    m = y * f[:, 0]
    want = np.mean(np.logaddexp(0.0, -m)) if loss == "logistic" else np.mean(np.exp(-m))
    value, grads = relu_mlp.loss_and_grad(config, params, X, y, loss)
    assert value == pytest.approx(want, rel=1e-14)
    assert {k: g.shape for k, g in grads.items()} == {k: p.shape for k, p in params.items()}
    assert losses.log_value(loss, f, y) == pytest.approx(np.log(want), rel=1e-12)
    with pytest.raises(errors.ConfigError, match="one output per sample"):
        losses.check_targets(loss, (5, 3), y)


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), L=st.integers(2, 5), scale=st.floats(1e-3, 1e3))
def test_the_recorded_margin_and_log_loss_are_the_losses_own_numbers(seed, L, scale):
    """refimpl/metrics.py records, bit for bit, what refimpl/losses.py defines (C's pow, NumPy's log)."""
    from dichotomy.refimpl import metrics

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9200))
    f, y = scale * rng.standard_normal(n), np.where(rng.random(n) < 0.5, -1.0, 1.0)
    arrays = [scale * rng.standard_normal(int(rng.integers(1, 50)))]
    norm = float(np.sqrt(sum(np.vdot(a, a) for a in arrays)))
    got = metrics.evaluate(np, "binary", "logistic", L, f, y, f, y, arrays)
    assert got["margin"] == losses.normalized_margin("binary", f, y, norm, L)
    assert got["train_log_loss"] == losses.log_value("logistic", f, y)
