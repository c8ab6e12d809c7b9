"""A command line that reads like the paper: its names, its numbers, and a word before a long run."""

import re

import pytest

from dichotomy.cli import main
from dichotomy.experiments import sweep
from dichotomy.validation import suite


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("dichotomy: error:"), err
    return err[-1]


@pytest.mark.parametrize("text,value", [("100000", 100_000), ("100_000", 100_000), ("1e5", 100_000), ("2E3", 2000)])
def test_steps_are_written_as_the_paper_writes_them(text, value):
    from dichotomy.cli.common import count

    assert count(text) == value


@pytest.mark.parametrize("text", ["1.5", "1e-3", "many", "nan", "inf"])
def test_a_count_that_is_not_whole_is_refused(text):
    import argparse

    from dichotomy.cli.common import count

    with pytest.raises(argparse.ArgumentTypeError, match="a whole number"):
        count(text)


def test_a_sweep_grid_takes_the_papers_names():
    g = sweep.grid("fig1a-quick", {"lambda": ["0.01", "0.02"], "depth": ["2", "3"], "eta": ["0.01"]})
    assert set(g.axes) == {"wd", "L", "lr"}
    with pytest.raises(sweep.ConfigError, match="the axis wd is given twice"):
        sweep.grid("fig1a-quick", {"lambda": ["0.01"], "wd": ["0.02"]})


def test_grid_values_split_by_a_space_say_how_to_join_them(tmp_path, capsys):
    assert main(["sweep", "fig3-quick", "--grid", "alpha=64", "128", "--out", str(tmp_path)]) == 2
    assert "joined by commas" in _error(capsys)


def test_train_needs_no_model_with_a_preset_and_a_contradiction_says_how_to_fix_it(tmp_path, capsys):
    assert main(["train", "--preset", "fig1a-quick", "--steps", "1e2", "--no-progress", "--no-plot", "--no-limits",
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "relu-mlp", "--preset", "fig3-quick", "--out", str(tmp_path / "b")]) == 2
    assert "drop MODEL (dichotomy train --preset fig3-quick)" in _error(capsys)
    assert main(["train", "--out", str(tmp_path / "c")]) == 2
    assert "give a MODEL" in _error(capsys)


def test_every_claim_states_its_paper_cost():
    for name, module in suite.CLAIMS.items():
        cost = module.PAPER_COST
        assert set(cost) == {"hours", "memory_gb", "basis"}, name
        assert cost["hours"] is None or cost["hours"] > 0
        assert cost["memory_gb"] > 0 and cost["basis"]


def test_paper_scale_shows_its_cost_and_asks_before_a_long_run(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(suite, "run", lambda *a, **k: calls.append(a) or [])
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    out = tmp_path / "val"
    assert main(["validate", "--paper", "--only", "fig1b", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fig1b | 22.0 h | 0.5 GB" in err and "add --yes" in err
    assert not calls and not out.exists()  # nothing started, nothing written
    assert main(["validate", "--paper", "--only", "fig1b", "--yes", "--out", str(out)]) == 0
    assert len(calls) == 1


def test_through_the_flow_the_paper_scale_shows_the_flow_s_cost_and_starts_without_asking(tmp_path, capsys,
                                                                                            monkeypatch):
    calls = []
    monkeypatch.setattr(suite, "run", lambda *a, **k: calls.append(k) or [])
    assert main(["validate", "--paper", "--flow", "--only", "fig3", "fig1b", "--out", str(tmp_path / "val")]) == 0
    err = capsys.readouterr().err
    assert "fig1b | 2 min | 0.5 GB | the flow, 6085 gradients" in err
    assert calls == [{"progress": True, "force": False, "checkpoint_every": None, "reuse_other_version": False,
                      "flow": {"rtol": 1e-6}}]


@pytest.mark.parametrize("argv, match", [(["--only", "fig2", "--flow"], "claim fig2 has no gradient-flow version"),
                                         (["--rtol", "1e-7"], "--rtol sets the gradient flow's tolerance: add --flow"),
                                         (["--flow", "--rtol", "2"], r"rtol must lie in \[1e-13, 0.1\]")])
def test_flow_options_that_cannot_work_are_one_line(tmp_path, capsys, argv, match):
    assert main(["validate", *argv, "--out", str(tmp_path / "val")]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "val").exists()


def test_a_short_paper_claim_starts_without_asking(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(suite, "run", lambda *a, **k: calls.append(a) or [])
    monkeypatch.setattr(suite, "ASK_ABOVE_HOURS", 1.0)
    assert main(["validate", "--paper", "--only", "fig3", "--out", str(tmp_path / "val")]) == 0
    assert len(calls) == 1


@pytest.mark.parametrize("answer,started", [("y", True), ("n", False), (EOFError, False)])
def test_at_a_terminal_the_paper_scale_asks_and_a_no_starts_nothing(tmp_path, monkeypatch, answer, started):
    calls = []
    monkeypatch.setattr(suite, "run", lambda *a, **k: calls.append(a) or [])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)

    def reply(prompt):
        if answer is EOFError:
            raise EOFError
        return answer

    monkeypatch.setattr("builtins.input", reply)
    assert main(["validate", "--paper", "--only", "fig1b", "--out", str(tmp_path / "val")]) == 0
    assert bool(calls) == started
