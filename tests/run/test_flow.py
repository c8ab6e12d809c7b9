"""The gradient flow through the one driver: engines on numpy and numba, time, records, failures, GD beside it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dichotomy import diagnosis, errors
from dichotomy.kernels import get_backend
from dichotomy.refimpl import data, diagonal_net, matrix_factorization, metrics, relu_mlp
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.flow_engine import ReferenceFlowEngine
from dichotomy.refimpl.params import flatten
from dichotomy.refimpl.steppers import Flow, LossNormalized
from dichotomy.run import driver
from dichotomy.run.checkpoint import Checkpoints
from dichotomy.run.gd_flow import gd_vs_flow


def _diagonal(seed=0, d=30, n=10, alpha=2.0):
    ds = data.sparse_linear_classification(np.random.default_rng(seed), d=d, n_train=n, n_test=20, k=3)
    c = diagonal_net.Config(d=d, alpha=alpha)
    return diagonal_net, c, diagonal_net.init(c), ds


def _completion(seed=0, d=10):
    ds = data.multiplication_table(np.random.default_rng(seed), d=d, train_fraction=0.3)
    c = matrix_factorization.Config(d=d, alpha=1.0)
    return matrix_factorization, c, matrix_factorization.init(c), ds


def test_a_flow_run_lands_on_the_times_lr_times_the_recorded_steps_and_says_what_it_cost():
    model, c, p, ds = _diagonal()
    traj = driver.run(model, c, p, ds, lr=0.05, wd=0.01, steps=400, record=[0, 3, 50, 400], schedule=Flow())
    np.testing.assert_array_equal(traj.steps, [0, 3, 50, 400])
    np.testing.assert_array_equal(traj.metrics["time"], 0.05 * np.array([0.0, 3, 50, 400]))
    i = traj.config["integrator"]
    assert i["method"] == "bs3" and i["rtol"] == 1e-6 and i["grad_evals"] == 1 + 3 * (i["accepted"] + i["rejected"])
    assert traj.config["stepper"] == "flow" and "stepper" not in driver.run(model, c, p, ds, lr=0.05, wd=0.01,
                                                                            steps=3).config


def test_the_separable_diagonal_flow_matches_an_independent_solver_coordinate_by_coordinate():
    """With X = I and the squared loss each coordinate (u_j, v_j) follows its own 2-d ODE: SciPy's DOP853 solves it."""
    d, wd, lr, steps = 6, 0.02, 0.1, 300
    rng = np.random.default_rng(5)
    target = rng.standard_normal(d)
    ds = Dataset(np.eye(d), target, np.eye(d), target, "squared")
    c = diagonal_net.Config(d=d, alpha=1.0)
    p = {"u": 0.5 + rng.random(d), "v": 0.5 + rng.random(d)}
    traj = driver.run(diagonal_net, c, p, ds, lr=lr, wd=wd, steps=steps, record=[steps], schedule=Flow(rtol=1e-10))
    for j in range(d):
        def rhs(_, z, j=j):
            u, v = z
            g = 2 * (u * u - v * v - target[j]) / d
            return [-(2 * u * g + wd * u), -(-2 * v * g + wd * v)]

        exact = solve_ivp(rhs, (0, lr * steps), [p["u"][j], p["v"][j]], method="DOP853", rtol=1e-12,
                          atol=1e-14).y[:, -1]
        np.testing.assert_allclose([traj.params["u"][j], traj.params["v"][j]], exact, rtol=1e-7)


@pytest.mark.parametrize("problem", [_diagonal, _completion])
def test_numba_integrates_the_same_flow_as_the_reference(problem):
    model, c, p, ds = problem()
    kwargs = dict(lr=0.05, wd=0.01, steps=2000, probe=ds.X_test, schedule=Flow(rtol=1e-8))
    want = get_backend("numpy").run(model, c, p, ds, **kwargs)
    got = get_backend("numba").run(model, c, p, ds, **kwargs)
    for k in ("train_loss", "test_loss", "param_norm"):
        np.testing.assert_allclose(got.metrics[k], want.metrics[k], rtol=1e-10, err_msg=k)
    np.testing.assert_allclose(got.outputs, want.outputs, rtol=1e-9, atol=1e-12)
    assert got.config["integrator"]["accepted"] == want.config["integrator"]["accepted"]


def test_the_driver_s_chunks_do_not_change_a_bit(monkeypatch):
    model, c, p, ds = _diagonal()
    kwargs = dict(lr=0.05, wd=0.01, steps=3000, record=[0, 1000, 3000], schedule=Flow())
    want = driver.run(model, c, p, ds, **kwargs)
    monkeypatch.setattr(driver, "CHUNK_SECONDS", 1e-9)  # one integrator step per engine call
    got = driver.run(model, c, p, ds, **kwargs)
    for k in want.params:
        np.testing.assert_array_equal(got.params[k], want.params[k])
    assert got.config["integrator"] == want.config["integrator"]


def test_a_batch_of_flows_with_their_own_learning_rates_each_reach_their_own_time():
    model, c, p, ds = _diagonal()
    trajs = driver.run_batch(model, [c, c], [p, p], ds, lr=[0.05, 0.1], wd=0.01, steps=200, record=[0, 200],
                             schedule=Flow())
    assert [t.metrics["time"][-1] for t in trajs] == [10.0, 20.0]
    alone = driver.run(model, c, p, ds, lr=0.1, wd=0.01, steps=200, record=[0, 200], schedule=Flow())
    np.testing.assert_array_equal(trajs[1].params["u"], alone.params["u"])


def _failing_field(monkeypatch, jumps: bool = False) -> list[int]:
    """From its 60th evaluation the reference field is NaN, or (``jumps``) jumps by +-1e3 at every call, which no
    step size passes; returns the evaluation counter (a list, to reset)."""
    field, calls = ReferenceFlowEngine.field, [0]

    def failing(self, b):
        f = field(self, b)

        def g(y):
            calls[0] += 1
            if calls[0] < 60:
                return f(y)
            return f(y) + 1e3 * (-1) ** calls[0] if jumps else np.full_like(y, np.nan)
        return g

    monkeypatch.setattr(ReferenceFlowEngine, "field", failing)
    return calls


@pytest.mark.parametrize("why", ["the gradient is not finite there", "the error test keeps failing"])
def test_a_collapsing_flow_is_one_line_naming_the_time_and_keeps_what_was_recorded(monkeypatch, why):
    _failing_field(monkeypatch, jumps=why.startswith("the error"))
    model, c, p, ds = _diagonal()
    with pytest.raises(errors.FlowFailed, match=rf"^the flow stopped at t = [\d.e+-]+: step .*; {why}") as stop:
        driver.run(model, c, p, ds, lr=0.05, wd=0.01, steps=1000, record=[0, 1, 1000], schedule=Flow(h_min=1e-6))
    traj = stop.value.trajectory
    assert traj.status == "diverged" and len(traj.steps) >= 1 and "failed" in traj.config["integrator"]


def test_a_failed_flow_resumed_from_its_checkpoint_fails_the_same_way(monkeypatch, tmp_path):
    calls = _failing_field(monkeypatch)
    model, c, p, ds = _diagonal()
    kwargs = dict(lr=0.05, wd=0.01, steps=1000, record=[0, 1, 1000], schedule=Flow(),
                  checkpoints=Checkpoints(tmp_path))
    with pytest.raises(errors.FlowFailed) as first:
        driver.run(model, c, p, ds, **kwargs)
    calls[0] = 0  # the engine's start evaluates the field at theta_0 again
    with pytest.raises(errors.FlowFailed) as again:  # resumed: the reason is in the checkpoint, not lost
        driver.run(model, c, p, ds, **kwargs)
    assert str(again.value) == str(first.value)
    assert again.value.trajectory.config["diverged_at"] == first.value.trajectory.config["diverged_at"] >= 1


def test_the_relu_mlp_flows_on_numpy_and_numba_says_why_not_in_one_line():
    ds = data.modular_arithmetic(np.random.default_rng(0), p=5, train_fraction=0.6)
    c = relu_mlp.Config(D=10, h=8, out=5)
    p = relu_mlp.init(c, np.random.default_rng(1))
    traj = driver.run(relu_mlp, c, p, ds, lr=0.1, wd=0.01, steps=50, schedule=Flow())
    assert traj.status == "completed" and traj.config["integrator"]["accepted"] > 0
    with pytest.raises(errors.ConfigError, match="integrates no gradient flow of the relu-mlp; use --backend numpy"):
        get_backend("numba").run(relu_mlp, c, p, ds, lr=0.1, wd=0.01, steps=50, schedule=Flow())


@pytest.mark.parametrize("bad, match", [({"rtol": 0}, "rtol must be a finite number > 0"),
                                        ({"rtol": 0.5}, r"rtol must lie in \[1e-13, 0.1\]"),
                                        ({"method": "rk4"}, "unknown flow method 'rk4'"),
                                        ({"max_rejections": 0}, "max_rejections must be an integer >= 1")])
def test_bad_flow_settings_are_one_line(bad, match):
    with pytest.raises(errors.ConfigError, match=match):
        Flow(**bad)


def test_a_watched_metric_is_recorded_on_every_backend_and_replaces_a_name_it_shares():
    model, c, p, ds = _diagonal()
    watch = {"w_sum": lambda config, params: float(np.sum(diagonal_net.weights(config, params))),
             "test_acc": lambda config, params: -1.0}
    for name in ("numpy", "numba"):
        traj = get_backend(name).run(model, c, p, ds, lr=0.05, wd=0.01, steps=20, record=[0, 20], watch=watch)
        assert traj.metrics["w_sum"][0] == 0.0 and traj.metrics["w_sum"][1] != 0.0
        np.testing.assert_array_equal(traj.metrics["test_acc"], [-1.0, -1.0])
    with pytest.raises(errors.ConfigError, match="watch must be a dict"):
        driver.run(model, c, p, ds, lr=0.05, wd=0.01, steps=2, watch={"x": 3})


def test_population_accuracy_is_what_a_large_sample_measures():
    ds = data.l2_separated_gaussians(np.random.default_rng(0), d=40, n_train=8, n_test=200_000, gamma=1.0)
    rng = np.random.default_rng(1)
    for w in (ds.truth["w_star"] + 0.5 * rng.standard_normal(40), rng.standard_normal(40), -ds.truth["w_star"]):
        sampled = np.mean(np.sign(ds.X_test @ w) == ds.y_test)
        assert abs(data.population_accuracy(ds, w) - sampled) < 4 * np.sqrt(0.25 / 200_000)
    assert data.population_accuracy(ds, ds.truth["w_star"]) == 1.0
    zero = np.zeros(40)  # every output 0: ties, each counted 1/2, as the metrics count a sampled test set
    assert data.population_accuracy(ds, zero) == 0.5 == metrics.accuracy(np, "binary", ds.X_test @ zero, ds.y_test)
    with pytest.raises(errors.ConfigError, match="not known in closed form"):
        data.population_accuracy(_diagonal()[3], np.ones(30))


def test_gd_approaches_the_flow_at_first_order_in_the_learning_rate():
    model, c, p, ds = _diagonal(alpha=1.0)
    T = 4.0
    gaps = [gd_vs_flow(model, c, p, ds, lr=lr, wd=0.05, steps=round(T / lr), record=[round(T / lr)],
                       rtol=1e-10).distance[-1] for lr in (0.02, 0.01)]
    assert 1.8 < gaps[0] / gaps[1] < 2.2


def test_at_quick_scale_gd_and_the_flow_switch_at_the_same_time():
    """fig1a's test scale: the 50% switch of GD at lr 0.01 and of the flow lie within 1% of each other."""
    from dichotomy.experiments import presets, runs

    preset = presets.override(presets.get("fig1a-quick"), d=400, n_train=40, n_test=400, steps=20_000, wd=3e-2)
    model, c, p, ds = presets.build(preset)
    backend = get_backend("numba")
    kwargs = dict(lr=preset.lr, wd=preset.wd, steps=preset.steps, record=runs.schedule(preset.steps))
    gd, fl = backend.run(model, c, p, ds, **kwargs), backend.run(model, c, p, ds, schedule=Flow(), **kwargs)
    a, b = diagnosis.measured_switch(gd, "test_acc"), diagnosis.measured_switch(fl, "test_acc")
    assert a is not None and b is not None
    assert abs(a.step_50 / b.step_50 - 1) < 0.01


def test_the_loss_normalized_flow_is_what_loss_normalized_gd_approaches_at_first_order():
    """Flow(eta=...) against LossNormalized GD (warm-up rate lr = 5 eta) in tau = eta s. Before the switch at
    log L = -5 (tau = 1) the gap halves with eta. Past it (tau = 3) it still falls at first order, but not evenly:
    GD switches at a whole step, whose rate jumps 30-fold there (lr = 5 eta to eta e^5), so the gap carries
    a sawtooth in where the crossing falls between two steps: a quarter of eta, well under half the gap."""
    model, c, p, ds = _diagonal(alpha=1.0)

    def gaps(eta, tau):
        steps = round(tau / eta)
        kwargs = dict(lr=5 * eta, wd=0.0, steps=steps, record=[0, steps // 2, steps])
        gd = driver.run(model, c, p, ds, schedule=LossNormalized(eta=eta), **kwargs)
        fl = driver.run(model, c, p, ds, schedule=Flow(eta=eta, rtol=1e-10), **kwargs)
        assert fl.config["schedule"] == "eta / L(theta)" and np.isfinite(fl.metrics["log_time"][-1])
        np.testing.assert_allclose(fl.metrics["time"], np.exp(fl.metrics["log_time"]))
        return (np.linalg.norm(flatten(gd.params) - flatten(fl.params)) / np.linalg.norm(flatten(fl.params)),
                abs(gd.metrics["log_time"][-1] - fl.metrics["log_time"][-1]), fl.metrics["train_log_loss"][-1])

    (a, _, before), (b, _, _) = gaps(0.004, 1.0), gaps(0.002, 1.0)
    assert before > -5 and 1.9 < a / b < 2.1
    (a, ta, after), (b, tb, _) = gaps(0.004, 3.0), gaps(0.001, 3.0)
    assert after < -5 and b < a / 2 and tb < ta / 2
    with pytest.raises(errors.ConfigError, match="integrates no loss-normalized flow; use --backend numpy"):
        get_backend("numba").run(model, c, p, ds, lr=0.01, wd=0.0, steps=10, schedule=Flow(eta=0.01))
    with pytest.raises(errors.ConfigError, match="without weight decay: pass wd=0"):
        driver.run(model, c, p, ds, lr=0.01, wd=0.1, steps=10, schedule=Flow(eta=0.01))
