"""Sweeps (dichotomy/experiments/sweep.py, `dichotomy sweep`): the grid checked before anything runs, the store,
resuming.

The grids are fig3-quick's completion at a few hundred to a few thousand steps: seconds per run.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dichotomy.cli import main
from dichotomy.errors import ConfigError
from dichotomy.experiments import sweep

SMALL = {"alpha": ["5", "10"], "wd": ["2e-3", "4e-3"]}


def _metrics(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


@pytest.mark.parametrize("axes, message", [
    ({"alpah": ["5"]}, "not a field of preset fig3-quick"),
    ({"alpha": ["x"]}, "'x' is not a number"),
    ({"d": ["9.5"]}, "is not an integer"),
    ({"alpha": ["5", "5.0"]}, "a value is repeated"),
    ({"seed": ["1"]}, "seeds are swept with --seeds"),
    ({"lr": ["-1"]}, "learning rate"),
    ({"alpha": []}, "at least one value"),
    ({"steps": ["2", "5"], "--steps": ["3"]}, "--steps sets every run's length, and steps is also a --grid axis"),
    ({"alpha": ["1", "", "2"]}, "a value is empty"),
])
def test_a_bad_grid_is_refused_in_one_line_before_anything_runs(axes, message, tmp_path):
    axes = dict(axes)
    steps = axes.pop("--steps", [None])[0]
    args = ["sweep", "fig3-quick", "--out", str(tmp_path / "s")] + (["--steps", steps] if steps else [])
    for name, values in axes.items():
        args += ["--grid", f"{name}={','.join(values)}"]
    if "" not in axes.get("alpha", []):  # an empty value is the command line's (parse_axis), not grid()'s
        with pytest.raises(ConfigError, match=message):
            sweep.grid("fig3-quick", axes, steps=None if steps is None else int(steps))
    assert main(args) == 2
    assert not (tmp_path / "s" / "runs").exists()


@pytest.mark.parametrize("name", ["trajectory.npz", sweep.STORE_FILE])  # a train result; a store of unknown grid
def test_a_folder_that_is_not_a_sweep_store_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ConfigError, match="is not a sweep store; give --out a new or empty folder"):
        sweep.run(sweep.grid("fig3-quick", {}, steps=2), tmp_path, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_sweep_whose_runs_all_failed_writes_a_readable_store_that_phase_explains(tmp_path):
    """No run recorded a step: the store has no step dimension (NetCDF 3 cannot hold one of length 0)."""
    outcome = sweep.run(sweep.grid("fig3-quick", {"alpha": ["1e300"]}, steps=2), tmp_path, backend="numpy",
                        workers=1, progress=False)
    assert list(outcome.failed.values()) == [
        "ConfigError: the outputs at the initialization are not finite: the initial parameters are too large "
        "for float64; lower alpha (or the init scale)"]
    with xr.open_dataset(outcome.store) as ds:
        assert "step" not in ds.dims and ds["status"].values.tolist() == [["missing"]]
    from dichotomy.experiments import phase
    with pytest.raises(ConfigError, match="no run of the sweep recorded anything \\(1 missing\\)"):
        phase.load(tmp_path)


def test_seeds_and_axes_parse():
    assert sweep.parse_seeds("2:5") == [2, 3, 4] and sweep.parse_seeds("7") == [7]
    for bad in ("5:2", "a:b", "-1"):
        with pytest.raises(ConfigError, match="--seeds"):
            sweep.parse_seeds(bad)
    assert sweep.parse_axis("alpha=1,2") == ("alpha", ["1", "2"])
    with pytest.raises(ConfigError, match="NAME=V1,V2"):
        sweep.parse_axis("alpha")
    g = sweep.grid("fig1a-quick", {"L": ["2", "3"], "alpha": ["64"], "d": ["300"]}, seeds=[0, 3], steps=10)
    assert g.axes == {"L": [2, 3], "alpha": [64.0], "d": [300]} and g.seeds == [0, 3]


def test_the_store_holds_every_run_with_dims_axes_seed_step_and_a_rerun_trains_only_what_is_missing(tmp_path):
    g = sweep.grid("fig3-quick", SMALL, seeds=[0, 1], steps=300)
    out = tmp_path / "s"
    first = sweep.run(g, out, backend="numba", workers=1, progress=False)
    assert (first.total, first.reused, first.trained, first.failed) == (8, 0, 8, {})
    ds = _metrics(first.store)
    assert ds["train_loss"].dims == ("alpha", "wd", "seed", "step")
    assert list(ds["alpha"].values) == [5.0, 10.0] and list(ds["seed"].values) == [0, 1]
    assert (ds["status"] == "completed").all() and np.isfinite(ds["train_loss"]).all()
    assert int(ds["step"][-1]) == 300
    # each run alone: the same metrics as a plain run of its preset
    from dichotomy.experiments import presets
    from dichotomy.experiments import runs as claim_runs
    from dichotomy.kernels import get_backend
    base = presets.get("fig3-quick")
    p = presets.override(base, alpha=10.0, wd=4e-3, steps=300, seed=base.seed + 1, init_seed=base.init_seed + 1)
    module, config, params, data = presets.build(p)
    traj = get_backend("numba").run(module, config, params, data, lr=p.lr, wd=p.wd, steps=300,
                                    record=claim_runs.schedule(300))
    stored = ds["train_loss"].sel(alpha=10.0, wd=4e-3, seed=1).values
    np.testing.assert_allclose(stored, traj.metrics["train_loss"], rtol=1e-12)
    # provenance of every run
    folder = next((out / "runs").iterdir())
    import json
    prov = json.loads((folder / "provenance.json").read_text())
    assert {"package_version", "git_commit", "versions", "seed", "backend", "host", "preset"} <= set(prov)
    # a run lost (here: its manifest damaged) is the only one trained again
    victim = sweep.plan(g, backend="numba")[5]
    (sweep.run_folder(out, victim.key) / "trajectory.npz").write_bytes(b"damaged")
    again = sweep.run(g, out, backend="numba", workers=1, progress=False)
    assert (again.reused, again.trained) == (7, 1)
    xr.testing.assert_identical(_metrics(again.store), ds)


def test_a_process_pool_gives_the_store_one_process_gives(tmp_path):
    g = sweep.grid("fig3-quick", SMALL, seeds=[0, 1], steps=300)
    one = sweep.run(g, tmp_path / "one", backend="numba", workers=1, progress=False)
    pool = sweep.run(g, tmp_path / "pool", backend="numba", workers=2, progress=False)
    assert pool.failed == {} and pool.trained == 8
    xr.testing.assert_identical(_metrics(one.store), _metrics(pool.store))
    # 4 runs on one dataset still fill both workers: two batches of 2, not one of 4
    import json
    g = sweep.grid("fig3-quick", {"alpha": ["4", "5", "6", "7"]}, steps=100)
    assert sweep.run(g, tmp_path / "split", backend="numba", workers=2, progress=False).trained == 4
    sizes = [json.loads(p.read_text())["config"]["batch"]["size"] for p in (tmp_path / "split").glob("runs/*/*.json")
             if p.name == "trajectory.json"]
    assert sizes == [2] * 4


def test_a_worker_killed_mid_run_is_retried_from_its_checkpoint_and_the_sweep_completes(tmp_path):
    """The pool's worker is killed with SIGKILL once its task has checkpointed; the task resumes from the
    checkpoint in a new pool, and the store equals an uninterrupted sweep's."""
    import multiprocessing

    g = sweep.grid("fig3-quick", {"alpha": ["5", "10"]}, seeds=[0], steps=40_000)
    out = tmp_path / "killed"
    killed = []

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if list((out / "checkpoints").glob("*/*.npz")):
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    outcome = sweep.run(g, out, backend="numba", workers=2, checkpoint_every=0.1, progress=False)
    thread.join()
    assert killed, "the worker finished before it could be killed: lengthen the runs"
    assert outcome.failed == {} and outcome.trained == 2
    clean = sweep.run(g, tmp_path / "clean", backend="numba", workers=1, progress=False)
    xr.testing.assert_identical(_metrics(outcome.store), _metrics(clean.store))


def test_kill_9_of_the_sweep_then_a_rerun_computes_only_the_missing_runs(tmp_path):
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "dichotomy", "sweep", "fig3-quick", "--grid", "alpha=4,5,6,7,8,9", "--steps", "20000",
           "--workers", "1", "--batch", "1", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(out.glob("runs/*/manifest.json"))) < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    stored = len(list(out.glob("runs/*/manifest.json")))
    assert 2 <= stored < 6, "the sweep finished before it could be killed: lengthen the runs"
    g = sweep.grid("fig3-quick", {"alpha": [str(a) for a in range(4, 10)]}, steps=20_000)
    again = sweep.run(g, out, backend="numba", workers=1, progress=False)
    assert (again.reused, again.trained, again.failed) == (stored, 6 - stored, {})


def test_a_toml_config_sweeps_like_the_command_line(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text('preset = "fig3-quick"\nsteps = 200\nseeds = "0:2"\nbackend = "numba"\n[grid]\nalpha = [5, 10]\n')
    assert main(["sweep", "--config", str(config), "--workers", "1", "--no-progress",
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["sweep", "fig3-quick", "--grid", "alpha=5,10", "--seeds", "0:2", "--steps", "200", "--workers", "1",
                 "--no-progress", "--out", str(tmp_path / "b")]) == 0
    xr.testing.assert_identical(_metrics(tmp_path / "a" / "sweep.nc"), _metrics(tmp_path / "b" / "sweep.nc"))
    config.write_text('preset = "fig3-quick"\nspeed = 3\n')
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "c")]) == 2


def test_a_sweep_through_the_flow_switches_where_gd_does_and_keeps_its_own_runs(tmp_path):
    from dichotomy.experiments import phase

    g = sweep.grid("fig3-quick", {"wd": [0.002, 0.004]}, steps=20_000)
    gd = sweep.run(g, tmp_path / "gd", backend="numba", workers=1, progress=False)
    flow = sweep.run(g, tmp_path / "flow", backend="numba", workers=1, progress=False, flow={"rtol": 1e-6})
    assert gd.trained == flow.trained == 2
    a, b = ([c["switch_step"] for c in phase.analyze(phase.load(tmp_path / k))["cells"]] for k in ("gd", "flow"))
    np.testing.assert_allclose(b, a, rtol=0.01)  # dichotomy phase's switch times, within 1%
    stored = json.loads((tmp_path / "flow" / "sweep.json").read_text())
    assert stored["flow"] == {"rtol": 1e-6}
    keys = {p.name for p in (tmp_path / "flow" / "runs").iterdir()}
    assert not keys & {p.name for p in (tmp_path / "gd" / "runs").iterdir()}  # other keys: never mixed with GD's
    provenance = json.loads(next((tmp_path / "flow" / "runs").glob("*/provenance.json")).read_text())
    assert provenance["integrator"]["method"] == "bs3"
    with pytest.raises(ConfigError, match=r"rtol must lie in"):
        sweep.run(g, tmp_path / "bad", backend="numba", workers=1, progress=False, flow={"rtol": 3.0})
    # lr x sharpness: measured at a GD run's two ends (none for the flow), and phase warns at the edge
    sharpness = {k: phase.load(tmp_path / k)["run_lr_sharpness"].values.ravel() for k in ("gd", "flow")}
    assert np.all((0 < sharpness["gd"]) & (sharpness["gd"] < 2)) and np.all(np.isnan(sharpness["flow"]))
    result = phase.analyze(phase.load(tmp_path / "gd"))
    assert "outside the gradient-flow regime" not in phase.summary(result)
    result["cells"][1]["lr_sharpness"] = 2.5
    assert "warning: lr x sharpness >= 2 in 1 cell(s) (wd=0.004)" in phase.summary(result)
