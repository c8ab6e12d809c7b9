"""The ``dichotomy`` command: a real training run end to end, presets, one-line errors and exit codes."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from dichotomy import cli, diagnosis
from dichotomy.cli import main
from dichotomy.experiments import presets
from dichotomy.refimpl import diagonal_net
from dichotomy.refimpl.limits import predictors
from dichotomy.run import driver
from dichotomy.run.trajectory import load
from tests.patience import patience

# A diagonal net small enough to train 50 steps in a fraction of a second.
TINY = ["diagonal-net", "--d", "20", "--n-train", "8", "--n-test", "8", "--steps", "50", "--no-progress"]


def test_train_writes_npz_json_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "matrix-completion", "--preset", "fig3-quick", "--steps", "50", "--d", "10",
               "--train-fraction", "0.3", "--alpha", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"trajectory.npz", "trajectory.json", "trajectory.png",
                                               "diagnosis.json", "regime.json", "manifest.json"}
    regime = json.loads((out / "regime.json").read_text())
    assert regime["in_flow_regime"] and 0 < regime["largest_lr_sharpness"] < 2
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["config"]["preset"] == "fig3-quick" and doc["config"]["steps"] == 50
    assert doc["config"]["model_config"]["d"] == 10 and doc["config"]["data"]["train_fraction"] == 0.3
    traj = load(out / "trajectory")
    assert traj.steps[-1] == 50 and traj.outputs.shape == (51, 70)  # probe: all 70 test entries (< 512)
    diag = json.loads((out / "diagnosis.json").read_text())
    assert diag["predictors"]["kernel"]["name"] == "kernel (K2)" and len(diag["kernel_distance"]) == 51
    printed = capsys.readouterr().out
    assert "train_loss" in printed and "distance to kernel (K2)" in printed and "min-nuclear-norm" in printed
    assert "below 2, GD follows the gradient flow" in printed


def test_train_through_the_flow_and_a_gd_run_above_the_edge_is_flagged(tmp_path, capsys):
    base = ["train", *TINY, "--lr", "0.05", "--wd", "0.01", "--sharpness"]
    assert main([*base, "--flow", "--rtol", "1e-7", "--out", str(tmp_path / "flow")]) == 0
    printed = capsys.readouterr().out
    assert "the gradient flow to t = 2.5 (the time of 50 steps at lr 0.05; bs3 at rtol 1e-07:" in printed
    traj = load(tmp_path / "flow" / "trajectory")
    assert traj.config["integrator"]["rtol"] == 1e-7 and np.all(traj.metrics["sharpness"] > 0)
    assert not (tmp_path / "flow" / "regime.json").exists()  # the flow has no step to be too large
    sharp = float(traj.metrics["sharpness"][0])
    assert main(["train", *TINY, "--lr", str(2.5 / sharp), "--wd", "0.01", "--out", str(tmp_path / "gd")]) in (0, 1)
    assert "warning: lr x sharpness 2.5 at step 0" in capsys.readouterr().out


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
    (["train", "relu-mlp", "--preset", "nope"], "unknown preset 'nope'"),
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
    assert np.all(np.abs(m["test_loss"][on_plateau] - 0.1023) < 2e-3)  # the kernel prediction (docs/paper.md §4.4)
    diag = json.loads((tmp_path / "diagnosis.json").read_text())
    early = (s >= 30) & (s <= 2000)  # lambda t << ln(alpha): the outputs are K2's (the norm has not decayed yet)
    assert np.all(np.array(diag["kernel_distance"])[early] < 0.01)
    assert m["test_loss"][-1] < 0.01


# --- one-line errors, exit codes, checks before compute ---------------------------------------------------

def _one_line_error(capsys, *fragments) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("dichotomy: error:") and "\n" not in err, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def no_compute(monkeypatch):
    """Fail loudly if any command gets as far as drawing data, training, timing or validating."""
    from dichotomy import bench
    from dichotomy.peers import crosscheck
    from dichotomy.validation import suite

    def forbidden(*args, **kwargs):
        raise AssertionError("compute started before the input was checked")

    for owner, name in ((presets, "build"), (bench, "bench"), (bench, "ceilings"), (suite, "run"),
                        (crosscheck, "write_golden"), (crosscheck, "problem")):
        monkeypatch.setattr(owner, name, forbidden)


@pytest.mark.parametrize("argv,match", [
    (["train", *TINY, "--seed", "-1"], "seeds are integers >= 0"),
    (["train", *TINY, "--init-seed", "-5"], "seeds are integers >= 0"),
    (["train", *TINY, "--seed", "1.5"], "seeds are integers >= 0"),
    (["train", "relu-mlp", "--zero-last-layer", "5"], "expected 0 or 1"),
    (["train", *TINY, "--steps", "-1"], "steps must be an integer >= 0"),
    (["train", *TINY, "--wd", "-1"], "weight decay"),
    (["train", *TINY, "--lr", "nan"], "learning rate"),
    (["train", *TINY, "--d", "0"], "d must be an integer >= 1"),
    (["train", *TINY, "--n-train", "-3"], "n_train must be an integer >= 1"),
    (["train", *TINY, "--alpha", "-1"], "alpha"),
    (["train", *TINY, "--h", "8"], "does not apply"),
    (["train", "relu-mlp", "--h", "-1"], "width h"),
    (["train", "relu-mlp", "--p", "-3"], "p must be an integer >= 2"),
    (["train", "relu-mlp", "--depth", "1"], "depth L"),
    (["train", "relu-mlp", "--train-fraction", "0"], "train_fraction"),
    (["train", "relu-mlp", "--op", "%"], "unknown operation '%'"),
    (["train", *TINY, "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "diag", "--steps", "1"], "unknown model 'diag'"),
    (["train", *TINY, "--backend", "numpy", "--dtype", "float32"], "float64 only"),
    (["train", *TINY, "--dtype", "float16"], "unknown dtype 'float16'"),
    (["train", *TINY, "--steps", "ten"], "a whole number"),
    (["train", *TINY, "--steps", "99999999999999999999999"], "more than 1e+15 steps"),
    (["train", *TINY, "--alpha", "1e300"], "outputs at the initialization are not finite"),
    (["train", *TINY, "--d", "1000000000000", "--n-train", "100"], "out of memory"),
])
def test_bad_train_input_is_a_one_line_error_before_training(tmp_path, capsys, monkeypatch, argv, match):
    def forbidden(*args, **kwargs):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(driver, "drive", forbidden)
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, match)
    assert not (tmp_path / "run").exists()  # nothing created (or the empty folder removed again)


@pytest.mark.parametrize("argv,match", [
    (["bench", "--engine", "nonsense"], "unknown engine 'nonsense'"),
    (["bench", "--engine", "numba", "nonsense"], "unknown engine 'nonsense'"),
    (["bench", "--workload", "diag-1m"], "unknown workload 'diag-1m'"),
    (["bench", "--rtol", "-1"], "rtol"),
    (["validate", "--only", "fig9"], "unknown claim 'fig9'"),
    (["validate", "--backend", "gpu"], "unknown backend 'gpu'"),
    (["validate", "--docs", "missing.md"], "missing.md"),
    (["export-golden", "--steps", "0"], "steps must be an integer >= 1"),
    (["export-golden", "--model", "diag"], "unknown model 'diag'"),
    (["crosscheck", "--framework", "mxnet"], "unknown framework 'mxnet'"),
    (["crosscheck", "--framework", "torch", "--mistake", "typo"], "unknown mistake 'typo'"),
    (["crosscheck", "--framework", "torch", "--steps", "0"], "steps must be an integer >= 1"),
    (["crosscheck", "--framework", "torch", "--rtol", "-1"], "rtol"),
    (["nonsense"], "'nonsense'"),
    ([], "required"),
    (["phase", ""], "an empty path"),
])
def test_bad_input_to_every_command_is_a_one_line_error(tmp_path, capsys, no_compute, argv, match):
    out = [] if argv[:1] in ([], ["nonsense"], ["crosscheck"]) else ["--out", str(tmp_path / "out")]
    assert main(argv + out) == 2
    _one_line_error(capsys, match)


def test_bench_checks_engine_names_itself(tmp_path, capsys, no_compute):
    """Not only through argparse: the command calls bench.check_engines before any work."""
    args = cli._parser().parse_args(["bench", "--out", str(tmp_path)])
    args.engine = ["numba", "nonsense"]
    with pytest.raises(cli.errors.ConfigError, match="unknown engine 'nonsense'"):
        cli.bench.run(args)


def _out_cases(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = [(a_file, "is a file, not a directory"), (a_file / "sub", "cannot create")]
    if sys.platform.startswith("linux"):  # read-only even for root, where chmod would not stop a write
        cases.append((Path("/proc"), "cannot write into"))
    return cases


@pytest.mark.parametrize("argv", [["train", *TINY], ["validate", "--only", "fig1a"], ["bench", "--workload", "mc"],
                                  ["export-golden", "--steps", "2"]])
def test_out_is_checked_before_any_compute(tmp_path, capsys, no_compute, argv):
    for out, match in _out_cases(tmp_path):
        assert main(argv + ["--out", str(out)]) == 2
        _one_line_error(capsys, "--out", match)


def test_crosscheck_json_is_checked_before_any_compute(tmp_path, capsys, no_compute):
    for out, match in [(tmp_path, "is a directory")] + [(o / "report.json", m) for o, m in _out_cases(tmp_path)]:
        assert main(["crosscheck", "--framework", "torch", "--json", str(out)]) == 2
        _one_line_error(capsys, "--json", match)


def test_docs_file_is_checked_before_any_compute(tmp_path, capsys, no_compute):
    docs = tmp_path / "validation.md"
    docs.write_text("# no markers here\n")
    assert main(["validate", "--only", "fig1a", "--docs", str(docs), "--out", str(tmp_path / "v")]) == 2
    _one_line_error(capsys, "section to fill")
    assert not (tmp_path / "v").exists()



def test_an_unexpected_exception_is_an_internal_error_and_debug_reraises(tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(presets, "build", bug)
    argv = ["train", *TINY, "--out", str(tmp_path)]
    assert main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert err == "dichotomy: internal error: KeyError: 'oops' (rerun with --debug for the traceback)"
    with pytest.raises(KeyError, match="oops"):
        main(["--debug", *argv])
    with pytest.raises(KeyError, match="oops"):
        main([*argv, "--debug"])


def test_debug_also_shows_bad_input_tracebacks(tmp_path):
    with pytest.raises(cli.errors.ConfigError, match="learning rate"):
        main(["--debug", "train", *TINY, "--lr", "-1", "--out", str(tmp_path)])


def test_train_defaults_to_numba_and_takes_a_dtype(tmp_path, capsys):
    assert cli._parser().parse_args(["train", "relu-mlp", "--out", "x"]).backend == "numba"
    assert main(["train", *TINY, "--no-plot", "--no-limits", "--dtype", "float32", "--out", str(tmp_path)]) == 0
    config = json.loads((tmp_path / "trajectory.json").read_text())["config"]
    assert config["backend"] == "numba" and config["dtype"] == "float32"


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("0", False), ("False", False)])
def test_zero_last_layer_takes_0_1_true_false(value, expected):
    args = cli._parser().parse_args(["train", "relu-mlp", "--zero-last-layer", value, "--out", "x"])
    assert args.zero_last_layer is expected


def test_zero_steps_records_the_initialization_only_without_warnings(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", *TINY, "--steps", "0", "--backend", "numpy", "--out", str(tmp_path)]) == 0
    traj = load(tmp_path / "trajectory")
    assert traj.steps.tolist() == [0] and traj.status == "completed"
    assert (tmp_path / "diagnosis.json").exists() and (tmp_path / "trajectory.png").exists()
    assert "undefined at every recorded step" in capsys.readouterr().out  # f(theta_0) = 0: no direction


@pytest.mark.parametrize("alpha,why", [("0", "alpha > 0"), ("0.5", "large init")])
def test_small_alpha_trains_saves_and_says_why_the_switch_time_is_undefined(tmp_path, capsys, alpha, why):
    assert main(["train", *TINY, "--alpha", alpha, "--no-plot", "--out", str(tmp_path)]) == 0
    assert load(tmp_path / "trajectory").status == "completed"
    predicted = json.loads((tmp_path / "diagnosis.json").read_text())["predicted"]  # strict JSON: NaN is null
    assert predicted["time"] is None and predicted["steps"] is None and why in predicted["note"]
    assert why in capsys.readouterr().out


def test_matrix_completion_at_alpha_zero_still_diagnoses(tmp_path):
    assert main(["train", "matrix-completion", "--d", "5", "--train-fraction", "0.5", "--alpha", "0", "--steps",
                 "3", "--no-progress", "--no-plot", "--out", str(tmp_path)]) == 0
    kkt = json.loads((tmp_path / "diagnosis.json").read_text())["kkt"]
    assert "no direction" in kkt["reason"]


def test_predicted_time_never_raises():
    for alpha, finite in ((0.0, False), (1.0, False), (0.3, False), (128.0, True)):
        p = predictors.predicted_time(diagonal_net, diagonal_net.Config(d=4, alpha=alpha), lr=0.1, wd=1e-2)
        assert math.isfinite(p["time"]) is finite and (p["note"] == "") is finite


def test_the_trajectory_is_saved_before_the_diagnostic_runs(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(diagnosis, "diagnose", broken)
    assert main(["train", *TINY, "--no-plot", "--out", str(tmp_path)]) == 3
    assert load(tmp_path / "trajectory").status == "completed"
    err = capsys.readouterr().err
    assert "trajectory is saved" in err and "internal error: ZeroDivisionError" in err


def test_a_diagnostic_that_cannot_be_computed_is_a_warning(tmp_path, capsys, monkeypatch):
    def refuses(*args, **kwargs):
        raise cli.errors.ConfigError("the Gram matrix would take 9 GiB")

    monkeypatch.setattr(diagnosis, "diagnose", refuses)
    assert main(["train", *TINY, "--no-plot", "--out", str(tmp_path)]) == 0
    assert "dichotomy: warning: no dichotomy diagnostic: the Gram matrix" in capsys.readouterr().err
    assert (tmp_path / "trajectory.npz").exists() and not (tmp_path / "diagnosis.json").exists()


@pytest.mark.parametrize("command", [[], ["train"], ["presets"], ["crosscheck"], ["export-golden"], ["validate"],
                                     ["bench"]])
def test_help_is_plain_text_and_every_option_is_explained(capsys, command):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    for markup in ("`", "**", ":func:", ":class:", ":mod:", ":data:"):
        assert markup not in text, markup
    parser = cli._parser()
    if command:
        parser = parser._subparsers._group_actions[0].choices[command[0]]
    for action in parser._actions:
        assert action.help, action.dest


def test_model_choices_are_the_model_names():
    from dichotomy.refimpl.models import MODELS

    train = cli._parser()._subparsers._group_actions[0].choices["train"]
    model = next(a for a in train._actions if a.dest == "model")
    assert list(model.choices) == list(MODELS) == ["diagonal-net", "matrix-completion", "relu-mlp"]


def test_suite_progress_goes_through_logging(tmp_path, caplog, monkeypatch):
    from dichotomy.kernels import get_backend
    from dichotomy.validation import suite

    monkeypatch.setattr(suite, "run_claim", lambda name, *a, **k: suite.ClaimReport(
        name, "t", "c", {}, [], [], 0.0, True))
    with caplog.at_level("INFO", logger="dichotomy.validation.suite"):
        suite.run(["fig1a"], "test", get_backend("numpy"), tmp_path, progress=False)
    assert any("[1/1] fig1a" in r.getMessage() for r in caplog.records)


def _train_in_subprocess(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "dichotomy", "train", "diagonal-net", "--d", "20", "--n-train", "8", "--n-test",
           "8", "--steps", "1000000000", "--backend", "numpy", "--no-plot", "--no-limits", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    seen = bytearray()

    def read():
        while chunk := os.read(proc.stderr.fileno(), 4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while b"step" not in seen and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the progress bar is up: training has started
    assert b"step" in seen, seen.decode(errors="replace")
    time.sleep(1.0)
    return proc, seen, reader


@pytest.mark.parametrize("sig,code,name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_during_train_saves_the_trajectory_and_exits_with_its_code(tmp_path, sig, code, name):
    proc, seen, reader = _train_in_subprocess(tmp_path)
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=patience(60))
    finally:
        proc.kill()
    reader.join(timeout=patience(5))
    err = seen.decode(errors="replace")
    assert rc == code, err
    assert f"interrupted ({name})" in err and "Traceback" not in err
    traj = load(tmp_path / "trajectory")
    assert traj.status == "interrupted" and traj.steps[-1] > 0


def test_gd_flow_prints_the_distance_and_writes_it(tmp_path, capsys):
    out = tmp_path / "gf"
    assert main(["gd-flow", "--preset", "fig1a-quick", "--d", "200", "--n-train", "20", "--n-test", "50",
                 "--steps", "2000", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "GD at lr 0.01 beside the flow (rtol 1e-06)" in printed and "the flow took" in printed
    doc = json.loads((out / "gd_flow.json").read_text())
    assert doc["steps"][-1] == 2000 and max(doc["distance"]) < 1e-2 and len(doc["gd"]["test_acc"]) == len(doc["steps"])
    assert (out / "gd_flow.png").stat().st_size > 10_000
    assert main(["gd-flow", "--preset", "fig2a-quick", "--backend", "numba", "--steps", "10"]) == 2
    assert "integrates no gradient flow of the relu-mlp" in capsys.readouterr().err
