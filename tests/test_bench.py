"""The benchmark harness (dichotomy/bench.py): agreement before timing, missing peers reported, the report files."""

import json

import numpy as np
import pytest

from dichotomy import bench
from dichotomy.cli import main
from dichotomy.errors import ConfigError
from dichotomy.kernels import BackendUnavailable


@pytest.fixture
def tiny(monkeypatch):
    """Two small workloads, cheap ceilings and a short timing budget: the harness, not the machine."""
    monkeypatch.setattr(bench, "WORKLOADS", {
        "diag-tiny": bench.Workload("diag-tiny", "diagonal-net", {"d": 64, "n": 16}, 0.01, 1e-3),
        "mc-tiny": bench.Workload("mc-tiny", "matrix-completion", {"d": 9}, 0.005, 1e-4),
        "mc-tiny-b4": bench.Workload("mc-tiny-b4", "matrix-completion", {"d": 9}, 0.005, 1e-4, batch=4)})
    monkeypatch.setattr(bench, "ceilings", lambda: {"bandwidth_GBps": 10.0, "gemm_GFLOPs": 50.0})
    real_time = bench._time
    monkeypatch.setattr(bench, "_time", lambda advance: real_time(advance, budget=0.01))


def test_bench_times_agreeing_engines_and_reports_missing_peers(tiny, monkeypatch):
    def missing(*args):
        raise BackendUnavailable("not installed here")

    monkeypatch.setitem(bench.PEERS, "missing-peer", missing)
    report = bench.bench(["diag-tiny", "mc-tiny"], ["numpy", "numba", "missing-peer"], progress=lambda s: None)
    rows = {(r["workload"], r["engine"]): r for r in report["results"]}
    for w in ("diag-tiny", "mc-tiny"):
        assert rows[(w, "numpy")]["ms_per_step"] > 0 and rows[(w, "numba")]["agreement"] <= 1e-8
        assert rows[(w, "numba")]["ratio_to_fastest_peer"] > 0
        assert rows[(w, "missing-peer")]["ms_per_step"] is None and "not installed" in rows[(w, "missing-peer")]["note"]
    with pytest.raises(ConfigError, match="unknown engine 'nonsense'"):
        bench.bench(["mc-tiny"], ["numpy", "nonsense"], progress=lambda s: None)
    assert rows[("diag-tiny", "numba")]["roofline_fraction"] > 0
    assert "numpy" in report["versions"]
    assert report["machine"]["isa"] and report["machine"]["cores"] >= 1


def test_roofline_fractions_are_the_floor_over_the_step_time(tiny):
    """The floor: the larger of int8 bytes over the bandwidth and the multiply-adds over the GEMM rate."""
    report = bench.bench(["diag-tiny"], ["numpy", "numba"], progress=lambda s: None)
    least = report["floors"]["diag-tiny"]
    # 64 x 16 int8 bytes at 10 GB/s (0.1 us) against 4 x 64 x 16 FLOPs at 50 GFLOP/s (0.08 us)
    assert least["bytes"] == 64 * 16 and least["flops"] == 4 * 64 * 16
    assert least["ms"] == pytest.approx(1e3 * 64 * 16 / 10e9)
    for r in report["results"]:
        assert r["roofline_fraction"] == pytest.approx(least["ms"] / r["ms_per_step"])
    assert "Floors at these ceilings" in bench.markdown(report)


def test_a_batch_is_compared_per_run_step_with_numpys_single_run(tiny):
    report = bench.bench(["mc-tiny-b4"], ["numpy", "numba", "jax"], progress=lambda s: None)
    rows = {r["engine"]: r for r in report["results"]}
    assert rows["numpy"]["note"] == ""  # a single run, timed
    assert "4 runs per call" in rows["numba"]["note"]
    assert rows["numba"]["ratio_to_fastest_peer"] == pytest.approx(
        rows["numpy"]["ms_per_step"] / rows["numba"]["ms_per_step"])
    assert rows["jax"]["ms_per_step"] is None and "NumPy's single run" in rows["jax"]["note"]


def test_a_disagreeing_engine_is_not_timed(tiny, monkeypatch):
    def wrong(module, params, X, y, lr, wd):  # returns parameters off by one
        P = {k: v.copy() for k, v in params.items()}
        return (lambda steps: None), (lambda: {k: v + 1.0 for k, v in P.items()})

    monkeypatch.setitem(bench.PEERS, "wrong", wrong)
    report = bench.bench(["mc-tiny"], ["numpy", "wrong"], progress=lambda s: None)
    bad = [r for r in report["results"] if r["engine"] == "wrong"][0]
    assert bad["ms_per_step"] is None and "disagrees" in bad["note"] and bad["agreement"] > 1e-8
    # the agreement threshold is the rtol asked for: a loose one lets the same engine be timed
    loose = bench.bench(["mc-tiny"], ["numpy", "wrong"], rtol=1e9, progress=lambda s: None)
    assert [r for r in loose["results"] if r["engine"] == "wrong"][0]["ms_per_step"] is not None


def test_bench_command_writes_json_markdown_and_the_docs_section(tiny, tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- bench:cpu:start -->\nold\n<!-- bench:cpu:end -->\n\nkept\n")
    assert main(["bench", "--workload", "mc-tiny", "--engine", "numpy", "numba", "--out", str(tmp_path / "b"),
                 "--docs", str(docs)]) == 0
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert {r["engine"] for r in report["results"]} == {"numpy", "numba"}
    text = docs.read_text()
    assert "old" not in text and "| mc-tiny | numba |" in text and text.rstrip().endswith("kept")
    assert main(["bench", "--workload", "nope", "--out", str(tmp_path / "b")]) == 2
    # the table is rendered again from the saved report, timing nothing
    docs.write_text("<!-- bench:cpu:start -->\nstale\n<!-- bench:cpu:end -->\n")
    assert main(["bench", "--from-json", str(tmp_path / "b" / "bench.json"), "--out", str(tmp_path / "c"),
                 "--docs", str(docs), "--json", str(tmp_path / "copy.json")]) == 0
    assert json.loads((tmp_path / "copy.json").read_text()) == report
    assert "stale" not in docs.read_text() and "| mc-tiny | numba |" in docs.read_text()
    assert json.loads((tmp_path / "c" / "bench.json").read_text()) == report
    (tmp_path / "not-a-report.json").write_text("[1, 2]")
    assert main(["bench", "--from-json", str(tmp_path / "not-a-report.json"), "--out", str(tmp_path / "d")]) == 2


def test_peers_compute_the_same_gd_as_the_oracle_when_installed():
    """Each peer (torch eager + SGD, JAX jit + fori_loop) against the oracle, 5 steps, every workload kind."""
    from dichotomy.peers.timing import PEERS

    for name in ("torch", "jax"):
        pytest.importorskip(name)
        for kind, w in (("diag", bench.Workload("d", "diagonal-net", {"d": 50, "n": 12}, 0.05, 1e-2)),
                        ("mc", bench.Workload("m", "matrix-completion", {"d": 7}, 0.1, 1e-2)),
                        ("mlp", bench.Workload("p", "relu-mlp", {"p": 5, "h": 8}, 0.1, 1e-2))):
            module, config, params, ds = bench.build(w)
            X = ds.X_train if kind == "mc" else ds.X_train.astype(np.float64)
            advance, current = PEERS[name](module, params, X, ds.y_train, w.lr, w.wd)
            ref_advance, ref_params = bench._backend_engine("numpy", module, config, params, ds, w.lr, w.wd, 1)
            advance(5)
            ref_advance(5)
            assert bench._agree(current(), ref_params()) <= 1e-10, (name, kind)


def test_flow_rows_report_the_flow_s_cost_per_unit_of_time_beside_gd_s():
    results = [{"workload": "diag-2k", "engine": "numba", "ms_per_step": 0.04}]
    rows = bench.flow_rows(["diag-2k", "mlp-31", "diag-20k-b16"], ["numba", "torch"], results, progress=lambda _: None)
    diag, mlp = rows  # batched workloads have no flow row; peers have no flow engine
    assert diag["time"] == 100.0 and diag["grad_evals"] == 1 + 3 * (diag["accepted"] + diag["rejected"])
    assert diag["grads_per_time"] == diag["grad_evals"] / 100 and diag["gd_s"] == pytest.approx(0.4)
    assert diag["gd_over_flow"] == pytest.approx(0.4 / diag["flow_s"])
    assert "integrates no gradient flow of the relu-mlp" in mlp["note"]
    table = bench.markdown({"date": "d", "machine": "m", "ceilings": {"bandwidth_GBps": 1, "gemm_GFLOPs": 1},
                            "versions": {}, "results": [], "flow": rows})
    assert "| diag-2k | numba | 100 |" in table and "GD / flow" in table
