"""Phase diagrams (dichotomy/experiments/phase.py, `dichotomy phase`): a hand-made store with known switch
times gives them back, with the right classes and fits; a real sweep's store gives the JSON and the PNG; bad input
is one line."""

import json
import math

import numpy as np
import pytest
import xarray as xr

from dichotomy.cli import main
from dichotomy.errors import ConfigError
from dichotomy.experiments import phase, sweep
from dichotomy.run.trajectory import record_steps

LR, T = 0.01, 100_000
ALPHAS, WDS, SEEDS = [10.0, 100.0, 1000.0], [0.01, 0.02], [0, 1]
SPREAD = 0.02  # seed s switches at (1 -+ SPREAD) of the cell's switch
MISGROKS, STILL = (100.0, 0.01), (1000.0, 0.02)


def _known_switch(alpha, wd):
    return 0.9 * math.log(alpha) / (LR * wd)


def _hand_made(folder):
    """test_acc rises from 0.5 to 1 (falls, for MISGROKS; stays, for STILL) along a logistic in step centred at
    (1 -+ SPREAD) * 0.9 t*, broad enough that the record grid does not matter; train_acc is 1 throughout."""
    steps = record_steps(T, dense=100, per_decade=100)
    shape = (len(ALPHAS), len(WDS), len(SEEDS))
    test = np.zeros(shape + (len(steps),))
    for i, a in enumerate(ALPHAS):
        for j, w in enumerate(WDS):
            for k, sign in enumerate((-1, 1)):
                centre = _known_switch(a, w) * (1 + sign * SPREAD)
                rise = 1 / (1 + np.exp(-(steps - centre) / (0.05 * centre)))
                test[i, j, k] = 0.5 + 0.5 * (1 - rise if (a, w) == MISGROKS else rise)
                if (a, w) == STILL:
                    test[i, j, k] = 0.5
    dims = ("alpha", "wd", "seed")
    ds = xr.Dataset({"test_acc": (dims + ("step",), test), "train_acc": (dims + ("step",), np.ones_like(test))},
                    coords={"alpha": ALPHAS, "wd": WDS, "seed": SEEDS, "step": steps})
    ds["status"] = (dims, np.full(shape, "completed"))
    ds["run_alpha"] = (dims, np.broadcast_to(np.array(ALPHAS)[:, None, None], shape).copy())
    ds["run_wd"] = (dims, np.broadcast_to(np.array(WDS)[None, :, None], shape).copy())
    ds["run_lr"] = (dims, np.full(shape, LR))
    ds["run_t_star"] = np.log(ds["run_alpha"]) / (ds["run_lr"] * ds["run_wd"])
    folder.mkdir()
    ds.to_netcdf(folder / sweep.STORE_FILE, engine="scipy")
    return folder


def test_a_hand_made_store_gives_its_known_switch_times_classes_and_slopes_back(tmp_path):
    result = phase.analyze(phase.load(_hand_made(tmp_path / "s")))
    cells = {(c["coords"]["alpha"], c["coords"]["wd"]): c for c in result["cells"]}
    assert len(cells) == 6
    for (a, w), c in cells.items():
        assert c["t_star"] == pytest.approx(math.log(a) / (LR * w))
        if (a, w) == STILL:
            assert c["class"] == "no switch" and c["switch_step"] is None and c["ratio"] is None
            continue
        assert c["class"] == ("misgrokking" if (a, w) == MISGROKS else "grokking")
        known = _known_switch(a, w)
        assert c["switch_step"] == pytest.approx(known, rel=2e-3)
        assert abs(c["switch_step"] - known) <= c["uncertainty"]["total"]
        assert c["uncertainty"]["seeds"] == pytest.approx(SPREAD * known, rel=0.05)  # sem of (1 -+ SPREAD) known
        assert 0 < c["uncertainty"]["record_grid"] < 0.02 * known  # 100 records per decade: ~1.2% half-interval
        assert c["ratio"] == pytest.approx(0.9, rel=2e-3)
    fits = result["fits"]
    assert fits["measured_vs_predicted"]["n"] == 10  # 5 cells that switched, 2 seeds each
    assert fits["measured_vs_predicted"]["slope"] == pytest.approx(0.9, rel=0.01)
    assert fits["ln_alpha"]["pooled"]["slope"] == pytest.approx(0.9, rel=0.01)
    assert fits["inv_wd"]["pooled"]["slope"] == pytest.approx(0.9, rel=0.01)
    lo, hi = fits["measured_vs_predicted"]["slope_ci"]
    assert lo < 0.9 < hi and hi - lo < 0.1  # the seeds spread by ±2%
    by_wd = {g["fixed"]["wd"]: g for g in fits["ln_alpha"]["groups"]}
    assert by_wd[0.01]["slope"] == pytest.approx(0.9 / (LR * 0.01), rel=0.01)
    assert by_wd[0.01]["predicted_slope"] == pytest.approx(1 / (LR * 0.01))
    by_alpha = {g["fixed"]["alpha"]: g for g in fits["inv_wd"]["groups"]}
    assert set(by_alpha) == {10.0, 100.0}  # alpha 1000 switches at one lambda only: no line through one x
    assert by_alpha[10.0]["slope"] == pytest.approx(0.9 * math.log(10), rel=0.01)


def test_phase_on_a_sweep_store_writes_the_json_and_the_png(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sweep", "fig1a-quick", "--grid", "alpha=64,1024", "--grid", "wd=4e-2,8e-2", "--grid", "d=300",
                 "--grid", "n_train=30", "--grid", "n_test=300", "--seeds", "0:2", "--steps", "20000", "--workers", "1",
                 "--no-progress", "--out", str(out)]) == 0
    with xr.open_dataset(out / sweep.STORE_FILE) as ds:
        t_star = ds["run_t_star"].sel(alpha=1024.0, wd=8e-2, d=300).values
    from dichotomy.refimpl import diagonal_net
    alpha = diagonal_net.init_scale(diagonal_net.Config(d=300, alpha=1024.0))
    np.testing.assert_allclose(t_star, math.log(alpha) / (0.01 * 8e-2))
    capsys.readouterr()
    assert main(["phase", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / phase.JSON_FILE).read_text())
    assert len(doc["cells"]) == 4 and doc["metric"] == "test_acc" and doc["seeds"] == [0, 1]
    assert (out / phase.FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fit measured vs t*" in printed and "grokking" in printed
    switched = [c for c in doc["cells"] if c["class"] == "grokking"]
    assert switched, "no cell of the quick grid grokked within 20000 steps"
    assert all(0.5 < c["ratio"] < 1.5 for c in switched)


def test_the_figure_has_one_diagram_per_setting_of_the_other_axes(tmp_path):
    """A sweep over d as well draws an (alpha, lambda) diagram for each d, each holding that d's cells only."""
    result = phase.analyze(phase.load(_hand_made(tmp_path / "s")))
    result["axes"] = result["axes"] + ["d"]
    result["cells"] = [{**c, "coords": {**c["coords"], "d": d}} for d in (100, 300) for c in result["cells"]]
    panels = phase.facets(result)
    assert [at for _, at in panels] == ["d = 100", "d = 300"]
    assert all(len(cells) == 6 and {c["coords"]["d"] for c in cells} == {int(at[4:])} for cells, at in panels)
    import matplotlib.image
    png = phase.figure(result, tmp_path / "phase.png")
    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > 3.5 * height  # three panels in a row (two, before: 2.6): two diagrams and measured vs predicted
    single = phase.analyze(phase.load(tmp_path / "s"))
    assert [at for _, at in phase.facets(single)] == [""]


@pytest.mark.parametrize("make, args, message", [
    (None, [], "sweep.nc does not exist: write the store with dichotomy sweep"),
    ("garbage", [], "is not a sweep store"),
    ("store", ["--metric", "nope"], "the store has no metric 'nope'; it has test_acc, train_acc"),
    ("store", ["--min-change", "-1"], "--min-change"),
])
def test_phase_refuses_what_is_not_a_store_in_one_line(make, args, message, tmp_path, capsys):
    folder = tmp_path / "s"
    if make == "garbage":
        folder.mkdir()
        (folder / sweep.STORE_FILE).write_text("not netcdf")
    elif make == "store":
        _hand_made(folder)
    assert main(["phase", str(folder), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (folder / phase.JSON_FILE).exists()


def test_a_store_missing_its_per_run_variables_is_refused(tmp_path):
    folder = _hand_made(tmp_path / "s")
    with xr.open_dataset(folder / sweep.STORE_FILE) as ds:
        ds = ds.load()
    ds.drop_vars("run_t_star").to_netcdf(folder / sweep.STORE_FILE, engine="scipy")
    with pytest.raises(ConfigError, match="no run_t_star"):
        phase.load(folder)


def _step_series(metric: str, plateau: float, final: float):
    """train_acc 1 from the start; ``metric`` at ``plateau`` until step 1000, then at ``final``."""
    steps = np.arange(0, 2001, 10)
    values = np.where(steps < 1000, plateau, final)
    return steps, {"train_acc": np.ones(steps.size), metric: values}


@pytest.mark.parametrize("plateau,final,kind", [
    (0.0, 0.1, "grokking"),              # a move of exactly min_change counts ("at least")
    (0.0, 0.1 + 1e-15, "grokking"),
    (0.5, 0.6, "grokking"),              # 0.6 - 0.5 = 0.0999...98 in floating point: still ten points
    (0.6, 0.5, "misgrokking"),
    (0.0, 0.0999, "no switch"),
    (0.5, 0.5999, "no switch"),
])
def test_min_change_counts_a_move_of_at_least_that_much(plateau, final, kind):
    steps, metrics = _step_series("test_acc", plateau, final)
    assert phase.run_switch(steps, metrics, "test_acc", min_change=0.1)["class"] == kind


@pytest.mark.parametrize("plateau,final,kind", [
    (0.2, 0.1, "grokking"),       # relative to the larger of |plateau| and |final|: a move of 0.5
    (0.1, 0.2, "misgrokking"),    # the same move, up: 0.5 of 0.2
    (0.2, 0.1001, "no switch"),   # 0.4995 of 0.2
])
def test_a_loss_moves_relative_to_the_larger_of_plateau_and_final(plateau, final, kind):
    steps, metrics = _step_series("test_loss", plateau, final)
    assert phase.run_switch(steps, metrics, "test_loss", min_change=0.5)["class"] == kind


def test_one_switched_seed_has_an_unknown_seed_spread_not_zero(tmp_path):
    store = phase.load(_hand_made(tmp_path / "s"))
    store["test_acc"][dict(seed=1)] = 0.5  # seed 1 never switches: every cell has one switched seed (or none)
    result = json.loads(json.dumps(phase.analyze(store)))  # as phase.json holds it
    for c in result["cells"]:
        if c["seeds_switched"] == 1:
            assert c["uncertainty"]["seeds"] is None  # unknown, not "no spread"
            assert c["uncertainty"]["total"] == pytest.approx(c["uncertainty"]["record_grid"])
