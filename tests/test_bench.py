"""The benchmark harness (kernels/bench.py): agreement before timing, missing peers reported, the report files."""

import json

import numpy as np
import pytest

from dichotomy.cli import main
from dichotomy.kernels import BackendUnavailable, bench
from dichotomy.refimpl.errors import ConfigError


@pytest.fixture
def tiny(monkeypatch):
    """Two small workloads, cheap ceilings and a short timing budget: the harness, not the machine."""
    monkeypatch.setattr(bench, "WORKLOADS", {
        "diag-tiny": bench.Workload("diag-tiny", "diagonal-net", {"d": 64, "n": 16}, 0.01, 1e-3),
        "mc-tiny": bench.Workload("mc-tiny", "matrix-completion", {"d": 9}, 0.005, 1e-4)})
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


def test_peers_compute_the_same_gd_as_the_oracle_when_installed():
    """Each peer (torch eager + SGD, JAX jit + fori_loop) against the oracle, 5 steps, every workload kind."""
    from dichotomy.kernels.peers import PEERS

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
