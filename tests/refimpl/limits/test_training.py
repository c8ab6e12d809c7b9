"""The limits against real GD training (docs/limits.md §8): the kernel phase approaches the linearized closed
form as alpha grows, the rich phase approaches the L1 / nuclear-norm optimum as lambda shrinks, and the
dichotomy diagnostic measures the switch."""

import math

import numpy as np
import pytest
from scipy.special import expit

from dichotomy import diagnosis, errors
from dichotomy.experiments import presets
from dichotomy.refimpl import data, diagonal_net, matrix_factorization
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.limits import kernel_predictors, max_margin, min_norm, ntk, predictors
from dichotomy.refimpl.params import param_norm
from dichotomy.run import driver
from dichotomy.run.trajectory import Trajectory


def _kernel_phase_error(module, config, X, y, steps):
    """max_s |f_GD(s) - f_lin(s)| / max |y| over s <= steps, with lr scaled as 1 / alpha^2 (same kernel time)."""
    params0 = module.init(config)
    K = ntk.gram(module, config, params0, X)
    lr = 0.5 * len(y) / (2 * np.linalg.eigvalsh(K).max())  # half the linearized stability limit
    record = np.unique(np.geomspace(1, steps, 12).astype(int))
    f_lin, _ = kernel_predictors.linearized_gd(module, config, params0, X, y, lr=lr, wd=0.0, steps=record)
    ds = Dataset(X, y, X[:1], y[:1], "squared", {})
    traj = driver.run(module, config, params0, ds, lr=lr, wd=0.0, steps=steps, record=record, probe=X)
    return np.abs(traj.outputs - f_lin).max() / np.abs(y).max()


@pytest.mark.parametrize("model", ["diagonal-net", "matrix-completion"])
def test_kernel_phase_gd_approaches_the_linearized_closed_form_as_alpha_grows(model):
    """Theorem 3.9's mechanism at lambda = 0: the GD outputs of the real network at alpha = 10, 30, 100 approach
    linearized GD at the same kernel time (lr alpha^2 fixed), the error falling each time (measured: as
    alpha^-4, 5e-5 -> 6e-7 -> 5e-9 for the diagonal net)."""
    rng = np.random.default_rng(11)
    if model == "diagonal-net":
        X, y = rng.standard_normal((8, 12)), rng.standard_normal(8)
        configs = [diagonal_net.Config(d=12, alpha=a) for a in (10.0, 30.0, 100.0)]
        module = diagonal_net
    else:
        X = np.array(np.unravel_index(rng.choice(36, 10, replace=False), (6, 6))).T
        X = X[X[:, 0] <= X[:, 1]]  # no pair together with its transpose: linearly independent features
        y = rng.standard_normal(len(X))
        configs = [matrix_factorization.Config(d=6, alpha=a) for a in (10.0, 30.0, 100.0)]
        module = matrix_factorization
    errors_ = [_kernel_phase_error(module, c, X, y, steps=300) for c in configs]
    assert errors_[0] > errors_[1] > errors_[2]
    assert errors_[0] < 1e-3 and errors_[0] / errors_[2] > 100  # faster than 1/alpha


def test_rich_phase_diagonal_net_aligns_with_the_max_l1_margin_classifier():
    """Corollary 3.7: trained well past t* = ln(alpha)/lambda, w / ||w|| -> w_L1*; closer as lambda shrinks."""
    ds = data.sparse_linear_classification(np.random.default_rng(5), d=200, n_train=100, n_test=200, k=3)
    w1 = max_margin.max_l1_margin(ds.X_train, ds.y_train).w
    w2 = max_margin.max_l2_margin(ds.X_train, ds.y_train).w
    config = diagonal_net.Config(d=200, alpha=8.0)
    cosines = []
    for wd, steps in ((1e-2, 20_000), (3e-3, 40_000)):
        assert steps * 0.3 > 10 * math.log(8.0) / wd  # trained for more than 10 t*
        traj = driver.run(diagonal_net, config, diagonal_net.init(config), ds, lr=0.3, wd=wd, steps=steps,
                         record=[0, steps])
        w = diagonal_net.weights(config, traj.params)
        cosines.append(w @ w1 / np.linalg.norm(w) / np.linalg.norm(w1))
        assert w @ w2 / np.linalg.norm(w) / np.linalg.norm(w2) < 0.9  # and it has left the L2 direction
    assert cosines[0] >= 0.99 and cosines[1] > cosines[0]


def test_rich_phase_completion_reaches_the_min_nuclear_norm_completion():
    """Theorem 3.12 / R2: the final W matches the min-nuclear-norm completion to 1e-2 and ||theta||^2 matches
    ||W*||_* to 2%, closer for the smaller lambda."""
    ds = data.multiplication_table(np.random.default_rng(7), d=20, train_fraction=0.4)
    best = min_norm.nuclear_norm_completion(20, ds.X_train, ds.y_train)
    config = matrix_factorization.Config(d=20, alpha=3.0)
    errs = []
    for wd, steps in ((3e-4, 50_000), (2e-4, 80_000)):
        traj = driver.run(matrix_factorization, config, matrix_factorization.init(config), ds, lr=0.5, wd=wd,
                         steps=steps, record=[0, steps])
        W = matrix_factorization.full_matrix(config, traj.params)
        errs.append(np.linalg.norm(W - best.W) / np.linalg.norm(best.W))
        assert param_norm(traj.params) ** 2 == pytest.approx(best.nuclear_norm, rel=0.02)
    assert errs[0] <= 1e-2 and errs[1] < errs[0]


def test_completion_plateau_is_the_kernel_prediction_and_training_sits_on_it():
    """Corollary 3.11 at the fig3 config: K2's predictor fits Omega and Omega^T and is 0 elsewhere; its test
    MSE (~0.1023, docs/paper.md §4.4) is the plateau GD sits on, to 1%."""
    preset = presets.override(presets.get("fig3"), steps=2000)
    module, config, params, ds = presets.build(preset)
    kp = kernel_predictors.kernel_predictor(module, config, params, ds.X_train, ds.y_train, ds.loss)
    f = kp.predict(module, config, ds.X_test)
    observed = {tuple(p) for p in ds.X_train}
    unseen = np.array([(j, i) not in observed for i, j in ds.X_test])
    np.testing.assert_allclose(f, np.where(unseen, 0.0, ds.y_test), atol=1e-10)
    plateau = np.mean((f - ds.y_test) ** 2)
    assert plateau == pytest.approx(0.1023, abs=1.5e-3)
    traj = driver.run(module, config, params, ds, lr=preset.lr, wd=preset.wd, steps=preset.steps,
                     record=[100, 300, 1000, 2000])
    np.testing.assert_allclose(traj.metrics["test_loss"], plateau, rtol=0.01)


def _sigmoid_trajectory(mid=1000.0, width=200.0):
    steps = np.unique(np.geomspace(1, 10_000, 400).astype(int))
    acc = 0.5 + 0.5 * expit((steps - mid) / (width / 4.39))  # 10%-90% over `width`
    m = {"train_acc": np.ones(len(steps)), "test_acc": acc, "train_loss": np.zeros(len(steps))}
    return Trajectory(steps, m, {}, {})


def test_measured_transition_finds_the_midpoint_and_the_width():
    t = diagnosis.measured_switch(_sigmoid_trajectory(mid=3000.0, width=400.0))
    assert t.metric == "test_acc" and t.plateau == pytest.approx(0.5, abs=1e-3) and t.final == pytest.approx(1)
    assert t.step_50 == pytest.approx(3000, rel=0.01) and t.width == pytest.approx(400, rel=0.05)
    flat = _sigmoid_trajectory(mid=1e9)
    assert diagnosis.measured_switch(flat) is None
    with pytest.raises(errors.ConfigError, match="no metric"):
        diagnosis.measured_switch(flat, "test_margin")


def test_predicted_time_and_its_convention():
    config = diagonal_net.Config(d=50, alpha=128.0)
    p = predictors.predicted_time(diagonal_net, config, lr=0.01, wd=1e-3)
    assert p["time"] == pytest.approx(math.log(128) / 1e-3) and p["steps"] == pytest.approx(p["time"] / 0.01)
    assert "||theta(0)||" in p["convention"]
    assert predictors.predicted_time(diagonal_net, config, lr=0.01, wd=0.0)["steps"] == math.inf


def test_distance_is_scale_free_for_classification_and_relative_for_regression():
    target = np.array([1.0, -2.0, 0.5])
    F = np.stack([3 * target, np.zeros(3), -target])
    d = predictors.distance(F, target, "binary")
    assert d[0] == pytest.approx(0, abs=1e-15) and np.isnan(d[1]) and d[2] == pytest.approx(2)
    assert predictors.distance(F, target, "regression")[0] == pytest.approx(2)


def test_diagnose_needs_probe_outputs(rng):
    ds = data.sparse_linear_classification(rng, d=20, n_train=10, n_test=10, k=3)
    config = diagonal_net.Config(d=20, alpha=4.0)
    traj = driver.run(diagonal_net, config, diagonal_net.init(config), ds, lr=0.1, wd=0.1, steps=5)
    with pytest.raises(errors.ConfigError, match="probe"):
        diagnosis.diagnose(traj, diagonal_net, config, diagonal_net.init(config), ds, ds.X_test, lr=0.1, wd=0.1)


def test_diagnose_reports_why_a_limit_is_missing(rng):
    ds = data.modular_arithmetic(rng, p=5, train_fraction=0.6)
    preset = presets.Preset(model="relu-mlp", dataset="modular_arithmetic", data_args={"p": 5},
                            model_args={"h": 8}, lr=0.1, wd=1e-3, steps=20, seed=0)
    config = presets.model_config(preset, ds)
    params0 = presets.models.get("relu-mlp").init(config, rng)
    module = presets.models.get("relu-mlp")
    probe = predictors.default_probe(ds)
    traj = driver.run(module, config, params0, ds, lr=0.1, wd=1e-3, steps=20, probe=probe)
    diag = diagnosis.diagnose(traj, module, config, params0, ds, probe, lr=0.1, wd=1e-3)
    assert diag.late.outputs is None and "no convex form" in diag.late.reason
    assert diag.kernel.outputs is not None and diag.kernel_distance.shape == traj.steps.shape
    assert "not computed" in diag.summary() and diag.to_json()["predictors"]["late"]["reason"]
