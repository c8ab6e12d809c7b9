"""dichotomy predict: t*, the limits' metrics and the verdict before any training, checked against measured runs."""

import json
import math

import numpy as np
import pytest

from dichotomy.cli import main
from dichotomy.experiments import phase, presets, sweep
from dichotomy.experiments.predict import MARGIN, RATIO_BAND, predict


@pytest.mark.parametrize("name, verdict", [("fig1a-quick", "grokking"), ("fig1b-quick", "misgrokking"),
                                           ("fig3-quick", "grokking")])
def test_the_verdict_of_each_quick_preset_and_its_times(name, verdict):
    preset = presets.get(name)
    p = predict(preset, name)
    assert p.verdict == p.limits == verdict
    alpha = 128.0 if name != "fig3-quick" else 10.0
    assert p.alpha == alpha and p.t_star == pytest.approx(math.log(alpha) / preset.wd)
    assert p.t_star_steps == pytest.approx(p.t_star / preset.lr)
    assert p.switch_steps == pytest.approx(tuple(r * p.t_star_steps for r in RATIO_BAND))
    assert p.steps_needed == pytest.approx(MARGIN * RATIO_BAND[1] * p.t_star_steps)


def test_the_weight_decay_for_a_budget_puts_the_end_of_the_switch_at_the_budget():
    p = predict(presets.get("fig3-quick"), budget=40_000)
    again = predict(presets.override(presets.get("fig3-quick"), wd=p.wd_for_budget))
    assert again.steps_needed == pytest.approx(40_000)


@pytest.mark.parametrize("changes, verdict, caveat", [
    ({"alpha": 0.5}, "outside the domain", "describes a large init"),
    ({"wd": 0.0}, "outside the domain", "without weight decay"),
    ({"alpha": 4.0}, "grokking", "ln α = 1.4 is small"),
])
def test_outside_its_domain_it_says_so(changes, verdict, caveat):
    p = predict(presets.override(presets.get("fig1a-quick"), **changes))
    assert p.verdict == verdict and any(caveat in w for w in p.warnings), p.warnings


def test_a_model_without_a_convex_late_limit_has_an_unknown_class():
    p = predict(presets.get("fig2a-quick"))
    assert p.verdict == "outside the domain" and p.limits == "unknown"  # alpha = 1 there, and no late limit
    assert "no convex form" in p.late["reason"]


@pytest.mark.parametrize("name, axis, values, steps", [("fig3-quick", "wd", [2e-3, 4e-3], 20_000),
                                                       ("fig1a-quick", "wd", [1e-2, 2e-2], 100_000),
                                                       ("fig1b-quick", "wd", [2e-2], 100_000)])
def test_predict_matches_dichotomy_phase_on_real_sweeps(tmp_path, name, axis, values, steps):
    """Every cell: the predicted class is the measured one, and the measured switch lies in the predicted band."""
    g = sweep.grid(name, {axis: values}, steps=steps)
    sweep.run(g, tmp_path, backend="numba", workers=1, progress=False)
    for cell in phase.analyze(phase.load(tmp_path))["cells"]:
        p = predict(presets.override(presets.get(name), steps=steps, **cell["coords"]))
        assert cell["class"] == p.verdict, (cell["coords"], cell["class"], p.verdict)
        low, high = p.switch_steps
        assert low <= cell["switch_step"] <= high, (cell["coords"], cell["switch_step"], p.switch_steps)


def test_predict_matches_the_quick_phase_diagram_of_docs_sweeps(tmp_path):
    """docs/sweeps.md's 3 x 3 diagram (2 seeds): every cell's class is predicted, or the run was warned too short."""
    axes = {"alpha": [64.0, 256.0, 1024.0], "wd": [2e-2, 4e-2, 8e-2], "d": [300], "n_train": [30], "n_test": [300]}
    g = sweep.grid("fig1a-quick", axes, seeds=[0, 1], steps=30_000)
    sweep.run(g, tmp_path, backend="numba", workers=1, progress=False)
    short = 0
    for cell in phase.analyze(phase.load(tmp_path))["cells"]:
        p = predict(presets.override(presets.get("fig1a-quick"), steps=30_000, **cell["coords"]))
        warned = any("may end before the switch" in w for w in p.warnings)
        assert warned == (30_000 < p.switch_steps[1])
        if cell["class"] != p.verdict:  # measured: one seed of alpha 1024, lambda 0.02 ends before its switch
            assert warned and cell["class"] in ("mixed", "no switch"), (cell["coords"], cell["class"], p.verdict)
            short += 1
        assert p.switch_steps[0] <= cell["switch_step"] <= p.switch_steps[1], cell["coords"]
    assert short <= 1


def test_the_command_prints_one_screen_or_json_and_refuses_bad_input_in_one_line(capsys):
    assert main(["predict", "fig3-quick", "--budget", "1e5"]) == 0
    out = capsys.readouterr().out
    assert "t* = ln α / λ = 1151 in time" in out and "verdict: grokking" in out and "for a budget of 1e+05" in out
    assert main(["predict", "fig1b-quick", "--wd", "0.02", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "misgrokking" and np.isclose(doc["t_star"], math.log(128) / 0.02)
    assert main(["predict", "fig3-quick", "--budget", "0"]) == 2
    assert capsys.readouterr().err.strip() == "dichotomy: error: --budget must be an integer >= 1, got 0"
