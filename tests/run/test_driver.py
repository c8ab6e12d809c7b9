"""The GD update, the record schedule, the driver's metrics, divergence, and the trajectory files."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dichotomy import errors
from dichotomy.experiments import presets
from dichotomy.refimpl import data, diagonal_net, matrix_factorization
from dichotomy.refimpl.params import flatten, param_norm, unflatten
from dichotomy.refimpl.steppers import sgd_step
from dichotomy.run import driver
from dichotomy.run.trajectory import Trajectory, load, record_steps
from tests.cases import any_case, random_like
from tests.tolerances import tol


@given(any_case, st.floats(1e-4, 1.0), st.floats(0.0, 1e-1))
def test_one_gd_step_is_the_coupled_weight_decay_formula(case, lr, wd):
    """theta' = theta - lr (grad + wd theta), i.e. torch.optim.SGD(lr, weight_decay=wd) (docs/math.md §5)."""
    model, config, params, X, rng = case
    grads = random_like(params, rng)
    new = sgd_step(params, grads, lr, wd)
    expected = flatten(params) * (1 - lr * wd) - lr * flatten(grads)
    np.testing.assert_allclose(flatten(new), expected, rtol=tol("identity"), atol=1e-14)
    assert all(new[k] is not params[k] for k in params)


def test_flatten_round_trip(rng):
    params = {"a": rng.standard_normal((2, 3)), "b": rng.standard_normal(4)}
    back = unflatten(flatten(params), params)
    assert all(np.array_equal(back[k], params[k]) for k in params)


@given(st.integers(0, 10**8), st.integers(1, 2000), st.integers(1, 300))
def test_record_schedule_is_dense_early_then_log_spaced(steps, dense, per_decade):
    r = record_steps(steps, dense=dense, per_decade=per_decade)
    assert r[0] == 0 and r[-1] == steps and np.all(np.diff(r) > 0)
    np.testing.assert_array_equal(r[: min(dense, steps) + 1], np.arange(min(dense, steps) + 1))
    decades = max(0.0, np.log10(max(steps, 1)) - np.log10(dense))
    assert len(r) <= min(dense, steps) + 1 + per_decade * decades + 2


def test_paper_length_run_keeps_a_few_thousand_points():
    assert 1000 < len(record_steps(10**7)) < 3000


@pytest.fixture
def tiny_mc():
    dataset = data.multiplication_table(np.random.default_rng(0), d=12, train_fraction=0.3)
    config = matrix_factorization.Config(d=12, alpha=2.0)
    return config, matrix_factorization.init(config), dataset


def test_driver_matches_a_hand_written_loop(tiny_mc):
    config, params, dataset = tiny_mc
    traj = driver.run("matrix-completion", config, params, dataset, lr=0.05, wd=1e-2, steps=30,
                     record=[0, 7, 30])
    p = params
    for _ in range(30):
        _, g = matrix_factorization.loss_and_grad(config, p, dataset.X_train, dataset.y_train, "squared")
        p = {k: v - 0.05 * (g[k] + 1e-2 * v) for k, v in p.items()}
    np.testing.assert_array_equal(traj.steps, [0, 7, 30])
    for k in p:
        np.testing.assert_allclose(traj.params[k], p[k], rtol=1e-14)
    assert traj.metrics["param_norm"][-1] == pytest.approx(param_norm(p), rel=1e-14)
    np.testing.assert_allclose(traj.metrics["time"], [0, 0.35, 1.5])
    assert traj.metrics["train_loss"][0] == pytest.approx(np.mean(dataset.y_train**2))
    assert set(traj.metrics) == {"train_loss", "train_log_loss", "test_loss", "param_norm", "time"}


def test_kernel_phase_norm_decays_as_alpha_exp_minus_lr_wd_step():
    """docs/paper.md §4.1: ||theta_s|| ~ ||theta_0|| (1 - lr wd)^s while the direction stays near theta_bar."""
    preset = presets.override(presets.get("fig1a-quick"), steps=2000, d=400, n_test=50)
    module, config, params, dataset = presets.build(preset)
    traj = driver.run(module, config, params, dataset, lr=preset.lr, wd=preset.wd, steps=preset.steps,
                     record=[0, 1000, 2000])
    predicted = 128 * (1 - preset.lr * preset.wd) ** traj.steps
    np.testing.assert_allclose(traj.metrics["param_norm"], predicted, rtol=1e-3)
    assert traj.metrics["train_acc"][-1] == 1.0


def test_divergence_names_the_step_and_keeps_the_trajectory(tiny_mc):
    config, params, dataset = tiny_mc
    with pytest.raises(errors.TrainingDiverged, match="smaller learning rate") as info:
        driver.run("matrix-completion", config, params, dataset, lr=50.0, wd=0.0, steps=1000)
    stop = info.value
    assert stop.step > 0 and stop.trajectory.status == "diverged"
    assert len(stop.trajectory) == stop.step  # every step before the divergence was recorded (dense phase)
    assert np.all(np.isfinite(stop.trajectory.metrics["train_loss"]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"), (dict(wd=-1e-3), "wd"),
    (dict(steps=-1), "steps"), (dict(steps=2.5), "steps"), (dict(record=[0, 99]), "record"),
])
def test_bad_run_arguments_raise(tiny_mc, kwargs, match):
    config, params, dataset = tiny_mc
    args = dict(lr=0.1, wd=0.0, steps=10) | kwargs
    with pytest.raises(errors.ConfigError, match=match):
        driver.run("matrix-completion", config, params, dataset, **args)


@pytest.mark.parametrize("kwargs,match", [
    (dict(run_config={"a": object()}), "run_config must hold only JSON values"),
    (dict(run_config=["seed", 1]), "run_config must be a dict"),
    (dict(checkpoints="/tmp/x"), "checkpoints must be a dichotomy.run.checkpoint.Checkpoints"),
    (dict(engine=None), "engine must be an engine class"),
    (dict(lr=True), "learning rate lr must be a number"),
    (dict(steps=10**30), "more than 1e\\+15 steps"),
])
def test_bad_run_options_are_refused_before_training(tiny_mc, monkeypatch, kwargs, match):
    def forbidden(*args, **kw):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(driver, "drive", forbidden)
    config, params, dataset = tiny_mc
    with pytest.raises(errors.ConfigError, match=match):
        driver.run("matrix-completion", config, params, dataset, **(dict(lr=0.1, wd=0.0, steps=10) | kwargs))
    with pytest.raises(errors.ConfigError, match="data must be a dichotomy Dataset"):
        driver.run("matrix-completion", config, params, (dataset.X_train, dataset.y_train), lr=0.1, wd=0.0, steps=1)


def test_an_initialization_too_large_for_float64_is_named_not_blamed_on_the_learning_rate(rng):
    dataset = data.sparse_linear_classification(rng, d=10, n_train=5, n_test=5, k=3)
    config = diagonal_net.Config(d=10, alpha=1e300)
    with np.errstate(all="raise"), pytest.raises(errors.ConfigError, match="lower alpha"):  # and no RuntimeWarning
        driver.run("diagonal-net", config, diagonal_net.init(config), dataset, lr=0.1, wd=0.0, steps=1)


def test_a_trajectory_that_cannot_be_saved_leaves_no_half_written_file(tmp_path, tiny_mc):
    config, params, dataset = tiny_mc
    traj = driver.run("matrix-completion", config, params, dataset, lr=0.1, wd=0.0, steps=2)
    traj.config["oops"] = {1, 2}  # a set: not JSON
    with pytest.raises(errors.ConfigError, match="JSON values"):
        traj.save(tmp_path / "t")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(errors.ConfigError, match="file stem"):
        traj.save("")


def test_mismatched_data_is_rejected_before_training(rng):
    dataset = data.sparse_linear_classification(rng, d=10, n_train=5, n_test=5, k=3)
    with pytest.raises(errors.ConfigError, match="d=11"):
        driver.run("diagonal-net", diagonal_net.Config(d=11, alpha=1.0), diagonal_net.init(
            diagonal_net.Config(d=11, alpha=1.0)), dataset, lr=0.1, wd=0.0, steps=1)
    bad = data.Dataset(dataset.X_train, dataset.y_train * 0, dataset.X_test, dataset.y_test, "logistic")
    config = diagonal_net.Config(d=10, alpha=1.0)
    with pytest.raises(errors.ConfigError, match="-1, \\+1"):
        driver.run("diagonal-net", config, diagonal_net.init(config), bad, lr=0.1, wd=0.0, steps=1)


def test_trajectory_round_trips_without_pickle(tmp_path, tiny_mc):
    config, params, dataset = tiny_mc
    traj = driver.run("matrix-completion", config, params, dataset, lr=0.05, wd=1e-3, steps=20,
                     probe=dataset.X_test[:7], run_config={"seed": 0, "preset": "custom"})
    assert traj.outputs.shape == (len(traj.steps), 7)
    np.testing.assert_array_equal(traj.outputs[-1],
                                  matrix_factorization.predict(config, traj.params, dataset.X_test[:7]))
    npz, sidecar = traj.save(tmp_path / "run" / "trajectory")
    back = load(npz)
    np.testing.assert_array_equal(back.steps, traj.steps)
    np.testing.assert_array_equal(back.outputs, traj.outputs)
    assert back.metrics.keys() == traj.metrics.keys() and back.params.keys() == traj.params.keys()
    for k in traj.metrics:
        np.testing.assert_array_equal(back.metrics[k], traj.metrics[k])
    doc = json.loads(sidecar.read_text())
    assert doc["config"]["lr"] == 0.05 and doc["config"]["seed"] == 0 and doc["config"]["backend"] == "numpy"
    assert doc["config"]["model_config"] == {"d": 12, "alpha": 2.0, "sigma": 0.0}
    assert "numpy" in doc["meta"]["versions"] and doc["status"] == "completed"
    with np.load(npz, allow_pickle=False) as z:
        assert "metric/test_loss" in z.files


def test_loading_a_missing_trajectory_says_what_is_missing(tmp_path):
    with pytest.raises(errors.ConfigError, match="trajectory.npz"):
        load(tmp_path / "trajectory")


def test_trajectory_len():
    assert len(Trajectory(np.arange(3), {}, {}, {})) == 3


def test_another_dataset_keeps_only_the_preset_arguments_it_takes():
    """fig1a-quick's k belongs to sparse_linear_classification: switching dataset drops it (it was a TypeError)."""
    switched = presets.override(presets.get("fig1a-quick"), dataset="l2_separated_gaussians", gamma=3.0)
    assert switched.data_args == {"d": 2_000, "n_train": 100, "n_test": 2_000, "gamma": 3.0}
    assert presets.override(presets.get("fig1a-quick"), k=5).data_args["k"] == 5
