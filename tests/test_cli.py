"""The ``dichotomy`` command: a real training run end to end, presets, and one-line errors."""

import json

import numpy as np
import pytest

from dichotomy.cli import main
from dichotomy.refimpl import presets
from dichotomy.refimpl.trajectory import load


def test_train_writes_npz_json_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "matrix-completion", "--preset", "fig3-quick", "--steps", "50", "--d", "10",
               "--train-fraction", "0.3", "--alpha", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"trajectory.npz", "trajectory.json", "trajectory.png",
                                               "diagnosis.json"}
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["config"]["preset"] == "fig3-quick" and doc["config"]["steps"] == 50
    assert doc["config"]["model_config"]["d"] == 10 and doc["config"]["data"]["train_fraction"] == 0.3
    traj = load(out / "trajectory")
    assert traj.steps[-1] == 50 and traj.outputs.shape == (51, 70)  # probe: all 70 test entries (< 512)
    diag = json.loads((out / "diagnosis.json").read_text())
    assert diag["predictors"]["kernel"]["name"] == "kernel (K2)" and len(diag["kernel_distance"]) == 51
    printed = capsys.readouterr().out
    assert "train_loss" in printed and "distance to kernel (K2)" in printed and "min-nuclear-norm" in printed


def test_no_limits_skips_the_diagnostic(tmp_path):
    rc = main(["train", "diagonal-net", "--steps", "5", "--d", "30", "--n-train", "10", "--n-test", "10",
               "--no-progress", "--no-plot", "--no-limits", "--out", str(tmp_path)])
    assert rc == 0 and not (tmp_path / "diagnosis.json").exists()


def test_default_preset_is_the_models_quick_one(tmp_path):
    assert main(["train", "relu-mlp", "--steps", "3", "--no-plot", "--no-progress", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "trajectory.json").read_text())["config"]["preset"] == "fig2a-quick"


@pytest.mark.parametrize("argv,match", [
    (["train", "diagonal-net", "--lr", "0"], "learning rate"),
    (["train", "diagonal-net", "--lr", "-0.1"], "learning rate"),
    (["train", "diagonal-net", "--k", "4"], "odd"),
    (["train", "diagonal-net", "--gamma", "2"], "does not apply"),
    (["train", "matrix-completion", "--train-fraction", "1.2"], "between 0 and 1"),
    (["train", "relu-mlp", "--preset", "fig3"], "is for matrix-completion"),
    (["train", "relu-mlp", "--preset", "nope"], "unknown preset"),
    (["train", "diagonal-net", "--backend", "cupy"], "cupy backend cannot run here"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, argv, match):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dichotomy: error:") and match in err and "\n" not in err


def test_divergence_saves_the_trajectory_and_suggests_a_smaller_lr(tmp_path, capsys):
    rc = main(["train", "matrix-completion", "--lr", "30", "--steps", "500", "--no-progress",
               "--out", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "diverged at step" in err and "smaller learning rate" in err
    assert load(tmp_path / "trajectory").status == "diverged"
    assert (tmp_path / "trajectory.png").exists()


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in presets.PRESETS)


@pytest.mark.parametrize("name", ["fig1a", "fig1b", "fig2a", "fig3"])
def test_every_paper_preset_has_a_quick_twin_on_the_same_model(name):
    assert presets.get(name).model == presets.get(f"{name}-quick").model


def _first(mask):
    """Index of the first True, or None."""
    return int(np.argmax(mask)) if np.any(mask) else None


@pytest.mark.slow
@pytest.mark.parametrize("model,preset,gap,final", [("diagonal-net", "fig1a-quick", 20, 0.99),
                                                    ("relu-mlp", "fig2a-quick", 3, 0.85)])
def test_quick_grokking_presets_fit_train_long_before_test_rises(tmp_path, model, preset, gap, final):
    """Train accuracy reaches 100% ``gap`` times earlier (in steps) than test accuracy gets halfway up.

    The MLP's gap is ~4x at quick scale, not Fig. 2a's ~20x: that needs lambda 10x smaller and 10x more
    steps (docs/user-guide.md, Presets).
    """
    assert main(["train", model, "--preset", preset, "--no-progress", "--out", str(tmp_path)]) == 0
    traj = load(tmp_path / "trajectory")
    m, s = traj.metrics, traj.steps
    fit = _first(m["train_acc"] == 1.0)
    assert fit is not None
    start = m["test_acc"][fit]
    rise = _first(m["test_acc"] >= start + 0.5 * (1 - start))
    assert rise is not None and s[rise] > gap * max(s[fit], 1)
    assert m["test_acc"][-1] >= final and start <= 0.6
    if model == "diagonal-net":
        _check_diagonal_dichotomy(tmp_path)


def _check_diagonal_dichotomy(out):
    """The diagnostic: at the kernel (max-L2-margin) predictor before the switch, at the max-L1-margin one after."""
    diag = json.loads((out / "diagnosis.json").read_text())
    steps = np.array(diag["steps"])
    kernel = np.array(diag["kernel_distance"], dtype=float)
    late = np.array(diag["late_distance"], dtype=float)
    before = (steps >= 10) & (steps <= diag["measured"]["step_10"] / 2)  # the plateau, before the 10% mark
    assert before.sum() > 100 and np.all(kernel[before] < 0.1) and np.all(late[before] > 1.0)
    assert late[-1] < 0.1 and kernel[-1] > 1.0
    t_star = diag["predicted"]["steps"]
    assert 0.3 * t_star < diag["measured"]["step_50"] < 3 * t_star  # t* = ln(128) / (lr wd) = 4.9e4 steps


@pytest.mark.slow
def test_quick_misgrokking_preset_falls_from_high_test_accuracy(tmp_path):
    assert main(["train", "diagonal-net", "--preset", "fig1b-quick", "--no-progress", "--no-plot",
                 "--out", str(tmp_path)]) == 0
    m = load(tmp_path / "trajectory").metrics
    assert m["train_acc"][100] == 1.0 and m["test_acc"][100] >= 0.97
    assert m["test_acc"][-1] <= 0.8 and np.all(m["train_acc"][100:] == 1.0)


@pytest.mark.slow
def test_quick_completion_preset_fits_then_sits_on_the_kernel_plateau_then_recovers(tmp_path):
    assert main(["train", "matrix-completion", "--preset", "fig3-quick", "--no-progress", "--no-plot",
                 "--out", str(tmp_path)]) == 0
    traj = load(tmp_path / "trajectory")
    m, s = traj.metrics, traj.steps
    assert m["train_loss"][s == 100][0] < 1e-4  # the observed entries are fitted within ~10^2 steps
    on_plateau = (s >= 100) & (s <= 5000)
    assert np.all(np.abs(m["test_loss"][on_plateau] - 0.1023) < 2e-3)  # the kernel prediction (digest §4.4)
    diag = json.loads((tmp_path / "diagnosis.json").read_text())
    early = (s >= 30) & (s <= 2000)  # lambda t << ln(alpha): the outputs are K2's (the norm has not decayed yet)
    assert np.all(np.array(diag["kernel_distance"])[early] < 0.01)
    assert m["test_loss"][-1] < 0.01
