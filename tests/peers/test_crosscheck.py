"""Cross-checking other frameworks (dichotomy.peers.crosscheck, dichotomy.peers.adapters): the built-in PyTorch and JAX
adapters agree with the reference, deliberately wrong ones are caught and named, golden files round-trip."""

import json

import numpy as np
import pytest

from dichotomy.cli import main
from dichotomy.errors import ConfigError
from dichotomy.peers import crosscheck as cc
from dichotomy.refimpl import models

MODELS = ("diagonal-net", "matrix-completion", "relu-mlp")


def _framework(name):
    pytest.importorskip(name, reason=f'{name} is in the peers extra: pip install ".[peers]"')
    from dichotomy.peers.adapters import adapter

    return adapter


def _check(framework, model, mistake=None, steps=100, wrap=None):
    adapter = _framework(framework)
    module, config, params, ds, lr, wd = cc.problem(model)
    peer = adapter(framework, module, config, ds.loss, mistake)
    step = peer.make_step(ds.X_train, ds.y_train, lr, wd)
    if wrap is not None:
        step = wrap(step)
    return cc.crosscheck(module, config, params, ds, lr=lr, wd=wd, steps=steps, forward=peer.forward,
                         loss_and_grad=peer.loss_and_grad, step=step, framework=framework)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_builtin_adapters_agree_to_1e10_over_100_steps(framework, model):
    report = _check(framework, model)
    assert report.passed, report.table()
    assert [c.name for c in report.comparisons] == ["forward f(theta; X)", "loss", "gradient",
                                                    "parameters, steps 0..100"]
    assert report.comparisons[-1].errors.shape == (101,) and report.diagnosis is None


@pytest.mark.parametrize("mistake,expected", [("decoupled", "decoupled:"), ("sum", "sum:"),
                                              ("float32", "float32 arithmetic"), ("half-mse", "half-mse:")])
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_wrong_adapters_are_caught_and_named(framework, mistake, expected):
    model = "matrix-completion" if mistake == "half-mse" else "diagonal-net"
    report = _check(framework, model, mistake, steps=30)
    assert not report.passed
    assert report.diagnosis is not None and report.diagnosis.startswith(expected), report.table()
    assert "DIFFERS" in report.table() and expected.rstrip(":") in report.table()


def test_float32_hidden_behind_float64_outputs_is_still_named():
    adapter = _framework("torch")
    module, config, params, ds, lr, wd = cc.problem("relu-mlp")
    step = adapter("torch", module, config, ds.loss, "float32").make_step(ds.X_train, ds.y_train, lr, wd)
    report = cc.crosscheck(module, config, params, ds, lr=lr, wd=wd, steps=10,
                           step=lambda p: {k: v.astype(np.float64) for k, v in step(p).items()})
    assert not report.passed and "single-precision" in report.diagnosis


def test_an_unexplained_bug_is_reported_without_a_made_up_diagnosis():
    def flip_b1(step):
        def wrong(params):
            out = step(params)
            out["b1"] = 2 * params["b1"] - out["b1"]  # the b1 update with the wrong sign
            return out
        return wrong

    report = _check("torch", "relu-mlp", steps=10, wrap=flip_b1)
    assert not report.passed and report.comparisons[-1].first_bad == 1
    assert report.diagnosis is None and "no usual convention" in report.table()


def test_loss_and_grad_alone_diagnoses_a_summed_loss():
    module, config, params, ds, lr, wd = cc.problem("diagonal-net")
    n = ds.X_train.shape[0]

    def summed(p, X, y):
        value, grads = module.loss_and_grad(config, p, X, y, ds.loss)
        return n * value, {k: n * v for k, v in grads.items()}

    report = cc.crosscheck(module, config, params, ds, lr=lr, wd=wd, loss_and_grad=summed)
    assert not report.passed and report.diagnosis.startswith("sum:")
    assert report.to_json()["comparisons"][0]["name"] == "loss"


def test_reference_conventions_differ_as_stated():
    module, config, params, ds, lr, wd = cc.problem("matrix-completion")
    ref = cc.reference_step(module, config, params, ds.X_train, ds.y_train, ds.loss, lr, wd)
    none = cc.reference_step(module, config, params, ds.X_train, ds.y_train, ds.loss, lr, wd, "no-decay")
    double = cc.reference_step(module, config, params, ds.X_train, ds.y_train, ds.loss, lr, wd,
                               "penalty-without-half")
    for k in params:  # the decay term is linear: no-decay, reference, 2 x decay are evenly spaced
        np.testing.assert_allclose(double[k] - ref[k], ref[k] - none[k], rtol=1e-9, atol=1e-15)
    with pytest.raises(ConfigError, match="unknown convention"):
        cc.reference_step(module, config, params, ds.X_train, ds.y_train, ds.loss, lr, wd, "adam")


def test_crosscheck_needs_something_to_compare():
    module, config, params, ds, lr, wd = cc.problem("relu-mlp")
    with pytest.raises(ConfigError, match="at least one"):
        cc.crosscheck(module, config, params, ds, lr=lr, wd=wd)


def test_every_model_has_a_standard_problem_and_an_unknown_name_is_one_line():
    assert list(cc.PROBLEMS) == list(models.MODELS) == list(MODELS)
    for name in MODELS:
        module, config, *_ = cc.problem(name)
        assert module.NAME == name and isinstance(config, module.Config)
    with pytest.raises(ConfigError, match="unknown model 'mlp'; choose one of diagonal-net"):
        cc.problem("mlp")


def test_relative_error_flags_shape_and_key_mismatches():
    assert cc.relative_error({"a": np.ones(3)}, {"a": np.ones(3)}) == 0.0
    assert cc.relative_error({"a": np.ones(2)}, {"a": np.ones(3)}) == np.inf
    assert cc.relative_error({"b": np.ones(3)}, {"a": np.ones(3)}) == np.inf
    assert cc.relative_error(np.array([np.nan]), np.array([1.0])) == np.inf


@pytest.mark.parametrize("model", MODELS)
def test_golden_files_round_trip_and_replay(tmp_path, model):
    npz, sidecar = cc.write_golden(tmp_path, model, steps=6)
    arrays, doc = cc.read_golden(tmp_path / model)
    fresh, fresh_doc = cc.golden(model, steps=6)
    assert set(arrays) == set(fresh) and doc["model_config"] == fresh_doc["model_config"]
    for k in fresh:
        np.testing.assert_array_equal(arrays[k], fresh[k])
    # without this package: plain json + np.load, and the documented shapes
    raw = json.loads(sidecar.read_text())
    with np.load(npz, allow_pickle=False) as z:
        for name, shape in raw["params"].items():
            assert z[f"params/{name}"].shape == (7, *shape)
        assert z["loss"].shape == (7,) and np.all(np.diff(z["loss"]) < 0) or model == "relu-mlp"
    # replaying the documented update from step 0 reproduces every step
    module, config, params, ds, lr, wd = cc.problem(model)
    assert (lr, wd) == (raw["lr"], raw["wd"])
    replay = cc.reference_trajectory(module, config, params, ds, lr, wd, 6)
    for s in range(7):
        for k in params:
            np.testing.assert_allclose(arrays[f"params/{k}"][s], replay[s][k], rtol=1e-14, atol=1e-300)


def test_cli_crosscheck_and_export_golden(tmp_path, capsys):
    _framework("torch")
    assert main(["crosscheck", "--framework", "torch", "--model", "diagonal-net", "--steps", "10",
                 "--json", str(tmp_path / "r.json")]) == 0
    assert "parameters, steps 0..10" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())[0]["passed"] is True
    assert main(["crosscheck", "--framework", "torch", "--model", "diagonal-net", "--steps", "10",
                 "--mistake", "sum"]) == 1
    assert "diagnosis: sum:" in capsys.readouterr().out
    assert main(["export-golden", "--out", str(tmp_path / "g"), "--model", "relu-mlp", "--steps", "3"]) == 0
    assert {p.name for p in (tmp_path / "g").iterdir()} == {"relu-mlp.npz", "relu-mlp.json"}
    assert main(["export-golden", "--out", str(tmp_path / "g"), "--steps", "0"]) == 2
