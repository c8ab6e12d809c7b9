"""The numba engines' threading policy (kernels/numba/threads.py) and host-chosen variants (tuning.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dichotomy.errors import ConfigError
from dichotomy.experiments import presets, sweep
from dichotomy.kernels import cores as kcores
from dichotomy.kernels import get_backend, tuning
from dichotomy.kernels.numba import threads as kthreads
from dichotomy.refimpl import data, diagonal_net, matrix_factorization
from dichotomy.refimpl.engine import RunSpec
from tests.patience import patience


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_thread_count_follows_a_restricted_affinity_mask():
    """A process allowed one core sees one core, and its engines run one thread, whatever the machine has."""
    code = ("import os, json; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from dichotomy.kernels import cores; from dichotomy.kernels.numba import threads as t; "
            "from dichotomy.experiments import sweep; print(json.dumps([cores.available_cores(), t.ceiling(), "
            "sweep.default_workers(8), cores.threads_per_worker(1)]))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=patience(120), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 1, 1, 1]


@pytest.mark.parametrize(("files", "cores"), [
    ({"cpu.max": "150000 100000\n"}, 2), ({"cpu.max": "50000 100000\n"}, 1), ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None), ({}, None)])
def test_cgroup_quota_caps_the_cores(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert kcores.available_cores(tmp_path) == (affinity if cores is None else min(affinity, cores))


def test_openmp_wait_is_set_only_when_the_user_chose_none():
    env = {}
    assert kthreads.configure_openmp(env) == kthreads.SPINCOUNT and env["GOMP_SPINCOUNT"] == kthreads.SPINCOUNT
    for mine in ({"OMP_WAIT_POLICY": "active"}, {"GOMP_SPINCOUNT": "1000000"}):
        env = dict(mine)
        assert kthreads.configure_openmp(env) is None and env == mine


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def governed(cost: dict, calls: int, steps: int = 1000, clock=None):
    """A governor between 1 and 2 threads driving a fake kernel whose step costs ``cost[threads]``(call index)."""
    clock = clock or FakeClock()
    gov = kthreads.Governor(2, clock=clock)
    index = {"i": 0}

    def call(k):
        import numba

        clock.now += k * cost[numba.get_num_threads()](index["i"])

    for i in range(calls):
        index["i"] = i
        gov.run(steps, call)
    return gov


@pytest.mark.skipif(kthreads.ceiling() < 2, reason="needs two cores to choose between 1 and 2 threads")
def test_governor_keeps_the_faster_count_and_follows_a_change():
    # idle: two threads twice as fast; the trials of one thread stay rare and short
    gov = governed({1: lambda i: 2e-4, 2: lambda i: 1e-4}, calls=400)
    assert gov.best == 2 and gov.steps[1] < 0.05 * gov.steps[2]
    # neighbours arrive at call 100: two threads become 10x slower, one thread takes over within a few calls
    gov = governed({1: lambda i: 2e-4, 2: lambda i: 1e-4 if i < 100 else 1e-3}, calls=400)
    assert gov.best == 1 and gov.steps[2] < 0.35 * gov.steps[1]
    # a tie keeps the count it has (no flapping)
    gov = governed({1: lambda i: 1e-4, 2: lambda i: 1e-4}, calls=50)
    assert gov.best == 2


@pytest.mark.skipif(kthreads.ceiling() < 2, reason="needs two cores to choose between 1 and 2 threads")
def test_governor_does_not_switch_on_one_lucky_trial():
    """A busy machine makes single samples noisy: the other count must win two trials in a row."""
    seen = {"calls at 1": 0}

    def one(i):
        seen["calls at 1"] += 1
        return 1e-5 if seen["calls at 1"] == 2 else 2e-4  # its first timed trial is lucky, the later ones not

    gov = governed({1: one, 2: lambda i: 1e-4}, calls=40)
    assert seen["calls at 1"] >= 3 and gov.best == 2 and gov.steps[1] < 0.05 * gov.steps[2]


def test_pinned_governor_never_tries_another_count():
    clock = FakeClock()
    gov = kthreads.Governor(2, pinned=1, clock=clock)
    for _ in range(20):
        gov.run(100, lambda k: None)
    assert gov.options == (1,) and gov.steps == {1: 2000}


def test_threads_option_is_checked():
    import numba

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="threads must be a positive integer"):
            get_backend("numba", threads=bad)
    with pytest.raises(ConfigError, match="NUMBA_NUM_THREADS"):
        get_backend("numba", threads=numba.config.NUMBA_NUM_THREADS + 1)
    with pytest.raises(ConfigError, match="the numpy backend takes no threads option"):
        get_backend("numpy", threads=1)
    with pytest.raises(ConfigError, match="layout must be"):
        get_backend("numba", layout="rows")


def _run(backend, preset_name, steps=200, **over):
    p = presets.override(presets.get(preset_name), **over)
    module, config, params, ds = presets.build(p)
    return backend.run(module, config, params, ds, lr=p.lr, wd=p.wd, steps=steps)


@pytest.mark.parametrize("preset", ["fig1a-quick", "fig1b-quick", "fig3-quick"])
def test_thread_free_engines_give_the_same_bits_at_every_count(preset):
    """The governor may change the thread count call by call because these results never depend on it."""
    over = {"d": 500} if preset.startswith("fig1") else {}
    runs = [_run(get_backend("numba", threads=t), preset, **over) for t in (1, kthreads.ceiling())]
    auto = _run(get_backend("numba"), preset, **over)
    for other in (runs[1], auto):
        for k in runs[0].params:
            np.testing.assert_array_equal(runs[0].params[k], other.params[k])


def test_both_layouts_of_pm1_data_agree_with_the_oracle_and_are_recorded():
    ref = _run(get_backend("numpy"), "fig1a-quick", steps=300, d=300)
    for layout in ("bits", "blocks"):
        traj = _run(get_backend("numba", layout=layout), "fig1a-quick", steps=300, d=300)
        assert traj.config["kernel"]["layout"] == layout
        for k in ref.params:
            np.testing.assert_allclose(traj.params[k], ref.params[k], rtol=1e-9, atol=1e-12)
    with pytest.raises(ConfigError, match="needs \\+-1 training inputs"):
        _run(get_backend("numba", layout="bits"), "fig1b-quick", d=100)


def test_a_resumed_run_keeps_the_layout_it_started_with(tmp_path, monkeypatch):
    """The layout is part of the engine's state: a run resumed where the cache says otherwise continues as begun."""
    p = presets.override(presets.get("fig1a-quick"), d=300)
    module, config, params, ds = presets.build(p)
    runs = [RunSpec(config, params, p.lr, p.wd)]
    first = get_backend("numba", layout="blocks").engine(module, runs, ds)
    first.advance(50)
    state = first.state()
    second = get_backend("numba", layout=None).engine(module, runs, ds)
    monkeypatch.setattr(tuning, "choose", lambda *a, **k: "bits")
    second.load_state(state)
    first.advance(50)
    second.advance(50)
    assert second.choice == "blocks"
    for k, v in first.params()[0].items():
        np.testing.assert_array_equal(v, second.params()[0][k])


def test_choices_are_timed_once_per_host_and_size_and_cached(tmp_path):
    path = tmp_path / "kernels.json"
    timed = []

    def trial(c):
        timed.append(c)
        return {"a": 2.0, "b": 1.0, "c": 0.9}[c]

    assert tuning.choose("k", "n=1", ("a", "b"), trial, path) == "b"
    assert tuning.choose("k", "n=1", ("a", "b"), trial, path) == "b" and timed == ["a", "b"]
    assert tuning.cached("k", "n=1", path) == "b" and tuning.cached("k", "n=2", path) is None
    doc = json.loads(path.read_text())
    assert list(doc) == [tuning.host_key()] and doc[tuning.host_key()]["k n=1"]["ms_per_step"] == {"a": 2e3, "b": 1e3}
    # a later candidate must beat the earlier by the margin
    assert tuning.choose("k", "n=3", ("b", "c"), trial, path, margin=0.8) == "b"
    assert tuning.choose("k", "n=4", ("a", "b"), trial, path, margin=0.8) == "b"


def test_an_unwritable_cache_warns_once_and_still_chooses(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    for size in ("n=1", "n=2"):
        assert tuning.choose("k", size, ("a", "b"), lambda c: {"a": 1.0, "b": 2.0}[c], blocked / "kernels.json") == "a"
    assert sum("not cached" in r.message for r in caplog.records) == 1


def test_sweep_workers_times_threads_fit_the_cores(monkeypatch):
    monkeypatch.setattr(kcores, "available_cores", lambda: 4)
    assert sweep.default_workers(10) == 4 and sweep.default_workers(10, threads=2) == 2
    assert sweep.default_workers(3) == 3
    assert kcores.threads_per_worker(2) == 2 and kcores.threads_per_worker(4) == 1
    assert kcores.threads_per_worker(2, threads=2) == 2
    with pytest.raises(ConfigError, match="3 workers x 2 threads is more than the 4 cores"):
        kcores.threads_per_worker(3, threads=2)


def test_mlp_thread_count_is_fixed_per_run_and_recorded(monkeypatch):
    p = presets.override(presets.get("fig2a-quick"), h=16)
    module, config, params, ds = presets.build(p)
    traj = get_backend("numba", threads=1).run(module, config, params, ds, lr=p.lr, wd=p.wd, steps=20)
    assert traj.config["kernel"]["threads"] == 1
    runs = [RunSpec(config, params, p.lr, p.wd)]
    engine = get_backend("numba").engine(module, runs, ds)
    monkeypatch.setattr(tuning, "choose", lambda *a, **k: 1)
    engine.advance(3)
    assert int(engine.state()["threads"]) == 1


def test_competitors_are_started_and_stopped():
    from dichotomy import bench

    with bench.busy(2, seconds=30):
        pass  # the context kills and reaps them; a leak would leave zombies behind
    with bench.busy(0):
        pass


def test_layout_option_is_refused_by_models_without_it():
    ds = data.multiplication_table(np.random.default_rng(0), d=5, train_fraction=0.5)
    config = matrix_factorization.Config(d=5, alpha=1.0)
    with pytest.raises(ConfigError, match="takes no layout option"):
        get_backend("numba", layout="bits").run(matrix_factorization, config, matrix_factorization.init(config), ds,
                                                lr=0.01, wd=0.0, steps=2)
    assert "layout" in get_backend("numba").engine.engines[diagonal_net.NAME].OPTIONS


def test_numpy_backend_fixes_its_blas_count_per_run_and_resumes_with_it(monkeypatch):
    """The numpy backend's numbers are the oracle's; only NumPy's BLAS count is set, once per run, and kept."""
    from dichotomy.kernels import blas
    from dichotomy.run import driver

    p = presets.override(presets.get("fig2a-quick"), h=16)
    module, config, params, ds = presets.build(p)
    traj = get_backend("numpy").run(module, config, params, ds, lr=p.lr, wd=p.wd, steps=5)
    assert traj.config["kernel"]["threads"] in (1, blas.Blas().most())
    oracle = driver.run(module, config, params, ds, lr=p.lr, wd=p.wd, steps=5)
    for k in oracle.params:
        np.testing.assert_allclose(traj.params[k], oracle.params[k], rtol=1e-12, atol=1e-14)
    runs = [RunSpec(config, params, p.lr, p.wd)]
    monkeypatch.setattr(tuning, "choose", lambda *a, **k: 1)
    first = get_backend("numpy").engine(module, runs, ds)
    first.advance(3)
    state = first.state()
    assert int(state["threads"]) == 1
    monkeypatch.setattr(tuning, "choose", lambda *a, **k: pytest.fail("a resumed run must not choose again"))
    second = get_backend("numpy").engine(module, runs, ds)
    second.load_state(state)
    first.advance(3)
    second.advance(3)
    assert second.threads == 1
    for k, v in first.params()[0].items():
        np.testing.assert_array_equal(v, second.params()[0][k])
