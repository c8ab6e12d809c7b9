"""The gradient-flow integrator (refimpl/flow.py) against flows known in closed form, and GD against the flow."""

import copy
import math

import numpy as np
import pytest
import scipy.linalg

from dichotomy.errors import ConfigError, FlowFailed
from dichotomy.refimpl import data, diagonal_net, flow
from dichotomy.refimpl.params import flatten, unflatten
from dichotomy.refimpl.steppers import sgd_step


def _integrate(fieldf, y0, times, rtol):
    state = flow.start(fieldf, y0, rtol=rtol)
    out = []
    for t in times:
        flow.advance_to(fieldf, state, t, rtol=rtol)
        assert state.t == t  # landed exactly on the requested time
        out.append(state.y.copy())
    return out, state


@pytest.mark.parametrize("wd", [1e-3, 0.1, 3.0])
def test_weight_decay_alone_shrinks_the_norm_exponentially(wd):
    y0 = np.random.default_rng(0).standard_normal(7)
    times = [0.1, 1.0, 10.0, 50.0]
    got, _ = _integrate(lambda y: -wd * y, y0, times, rtol=1e-10)
    for t, y in zip(times, got, strict=True):
        assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(y0) * math.exp(-wd * t), rel=1e-8)


def _linear_problem(seed=1, n=12, p=5, wd=0.05):
    rng = np.random.default_rng(seed)
    X, target = rng.standard_normal((n, p)), rng.standard_normal(n)
    A, b = X.T @ X / n + wd * np.eye(p), X.T @ target / n
    return (lambda y: -(A @ y - b)), A, b, rng.standard_normal(p)


def test_a_linear_models_flow_matches_its_closed_form():
    fieldf, A, b, y0 = _linear_problem()
    star = np.linalg.solve(A, b)
    times = [0.5, 2.0, 10.0, 40.0]
    got, state = _integrate(fieldf, y0, times, rtol=1e-9)
    for t, y in zip(times, got, strict=True):
        exact = star + scipy.linalg.expm(-A * t) @ (y0 - star)
        assert np.linalg.norm(y - exact) <= 1e-6 * np.linalg.norm(exact)
    assert state.grad_evals == 1 + 3 * (state.accepted + state.rejected)


def test_the_error_falls_with_the_tolerance_and_the_steps_grow_at_third_order():
    """Error per unit of tolerance stays put; steps grow like rtol^(-1/3): 1000x tighter costs ~10x the steps."""
    fieldf, A, b, y0 = _linear_problem(seed=2)
    star = np.linalg.solve(A, b)
    exact = star + scipy.linalg.expm(-A * 5.0) @ (y0 - star)
    runs = [_integrate(fieldf, y0, [5.0], rtol) for rtol in (1e-5, 1e-8)]
    errors = [np.linalg.norm(out[0] - exact) for out, _ in runs]
    assert errors[0] > 100 * errors[1]
    steps = [state.accepted for _, state in runs]
    assert 5 < steps[1] / steps[0] < 20


def test_gd_approaches_the_flow_at_first_order_in_the_learning_rate():
    """theta_GD(k) - theta_flow(lr k) shrinks like lr: halving lr halves it (docs/math.md §7)."""
    ds = data.sparse_linear_classification(np.random.default_rng(3), d=20, n_train=10, n_test=5, k=3)
    config = diagonal_net.Config(d=20, alpha=2.0)
    p0, wd, T = diagonal_net.init(config), 0.05, 2.0

    def fieldf(y):
        g = diagonal_net.loss_and_grad(config, unflatten(y, p0), ds.X_train, ds.y_train, ds.loss)[1]
        return -(flatten(g) + wd * y)

    exact = _integrate(fieldf, flatten(p0), [T], rtol=1e-11)[0][0]
    gaps = []
    for lr in (0.02, 0.01):
        p = p0
        for _ in range(round(T / lr)):
            p = sgd_step(p, diagonal_net.loss_and_grad(config, p, ds.X_train, ds.y_train, ds.loss)[1], lr, wd)
        gaps.append(np.linalg.norm(flatten(p) - exact))
    assert 1.7 < gaps[0] / gaps[1] < 2.3


def test_a_state_copied_mid_flow_ends_bit_for_bit_where_the_flow_ends():
    fieldf, *_, y0 = _linear_problem(seed=4)
    state = flow.start(fieldf, y0, rtol=1e-7)
    flow.advance_to(fieldf, state, 3.0, rtol=1e-7)
    saved = copy.deepcopy(state)
    flow.advance_to(fieldf, state, 9.0, rtol=1e-7)
    flow.advance_to(fieldf, saved, 9.0, rtol=1e-7)
    assert np.array_equal(saved.y, state.y) and saved.accepted == state.accepted and saved.h == state.h


def test_a_field_that_stops_being_finite_stops_the_flow_in_one_line():
    def fieldf(y):
        return np.full_like(y, np.nan) if y[0] > 1.5 else np.ones_like(y)

    state = flow.start(fieldf, np.zeros(3))
    with pytest.raises(FlowFailed, match=r"stopped at t = 1\.\d+.*not finite"):
        flow.advance_to(fieldf, state, 10.0)
    with pytest.raises(FlowFailed, match="not finite at t = 0"):
        flow.start(fieldf, np.full(3, 2.0))
    with pytest.raises(ConfigError, match="runs forward"):
        flow.advance_to(fieldf, flow.start(fieldf, np.zeros(3)), -1.0)
