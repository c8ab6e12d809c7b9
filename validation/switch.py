"""One run of a diagonal net on a classification task, measured against both of its limits (Figs. 1a, 1b).

The early-phase predictor of the L = 2 diagonal net is the max-L2-margin linear classifier (the NTK is
linear: Corollary 3.6) and the late-phase one the max-L1-margin classifier (Corollary 3.7). Both are computed
exactly (refimpl.limits), their test accuracies are the predicted plateau and final values, and the distance
of the network's normalized outputs to each is recorded along the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dichotomy import diagnosis, errors, plots
from dichotomy.experiments import runs
from dichotomy.refimpl import blocks, diagonal_net, losses
from dichotomy.refimpl.data import population_accuracy
from dichotomy.refimpl.limits import max_margin
from dichotomy.validation.claim import Check, Results


def kernel_phase_end(t_star: float, measured) -> float:
    """The end of the window in which the kernel-phase predictions (the kernel limit, the norm decay) are checked.

    It is half the measured switch time (its 50% point), or t*/2 when no switch was measured.

    The theorems hold at (1 - c) t* for every c in (0, 1) as alpha -> infinity; at finite alpha the switch is shifted by
    O(log log A / lambda) (docs/paper.md §4.2), so the window is placed relative to the measured switch, with c = 1/2.
    """
    if measured is not None and math.isfinite(measured.step_50):
        return 0.5 * float(measured.step_50)
    return 0.5 * t_star


def norm_decay(traj, lr: float, wd: float, end: float) -> tuple[np.ndarray, float | None]:
    """The kernel phase's norm at every recorded step, and the measured norm's largest relative deviation from it.

    The kernel phase's norm is ||theta_0|| (1 - lr wd)^s at step s; the deviation is taken over steps 1..``end`` (None
    if no step lies there).
    """
    norm = traj.metrics["param_norm"]
    predicted = norm[0] * (1.0 - lr * wd) ** traj.steps.astype(float)
    early = (traj.steps >= 1) & (traj.steps <= end)
    error = float(np.max(np.abs(norm[early] / predicted[early] - 1))) if early.any() else None
    return predicted, error


def test_accuracy(data, w, population: bool) -> float:
    """The test accuracy of the linear classifier w: on the test set, or on the population (exactly) if asked."""
    if population:
        return population_accuracy(data, w)
    return losses.accuracy("binary", blocks.matvec(data.X_test, w), data.y_test)


def population_watch(module, data) -> dict:
    """The run's test accuracy as the exact population accuracy of its linear predictor w = u^L - v^L (Fig. 1b)."""
    if module.NAME != diagonal_net.NAME or data.truth is None:
        raise errors.ConfigError("'population' needs a diagonal net on data whose population is known "
                                 "(l2_separated_gaussians)")
    return {"test_acc": lambda config, params: population_accuracy(data, diagonal_net.weights(config, params))}


def compute(config: dict, backend, progress: bool = False) -> Results:
    """Train ``config["run"]`` and compare it with the max-L2 and max-L1 margin classifiers.

    With ``"population": true`` in the run, every test accuracy is the exact population one (:func:`population_watch`).
    """
    run = runs.train(config["run"], backend, progress=progress, label="diagonal net",
                     watch=population_watch if config["run"].get("population") else None)
    traj, data, population = run.traj, run.data, bool(config["run"].get("population"))
    lr, wd = run.preset.lr, run.preset.wd
    d = diagnosis.diagnose(traj, run.module, run.config, run.params0, data, run.probe, lr=lr, wd=wd)
    l2 = max_margin.max_l2_margin(data.X_train, data.y_train)
    l1 = d.late.solved()  # the max-L1-margin classifier the diagnostic solved for
    t_star = d.predicted["steps"]
    m = d.measured
    norm = traj.metrics["param_norm"]
    fit = diagnosis.fit_step(traj)
    end = kernel_phase_end(t_star, m)
    predicted_norm, norm_error = norm_decay(traj, lr, wd, end)
    at_end = min(int(np.searchsorted(traj.steps, end, side="right")) - 1, len(traj.steps) - 1)
    values = {
        "fit_step": fit, "t_star_steps": t_star, "alpha": d.predicted["alpha"], "kernel_phase_end": end,
        "t_star_per_coordinate_steps": math.log(d.predicted["alpha"] / math.sqrt(2 * run.config.d)) / (lr * wd),
        "l2_test_acc": test_accuracy(data, l2.w, population), "l1_test_acc": test_accuracy(data, l1.w, population),
        "plateau_test_acc": None if m is None else m.plateau,
        "final_test_acc": float(traj.metrics["test_acc"][-1]),
        "final_train_acc": float(traj.metrics["train_acc"][-1]),
        "kernel_distance_at_window_end": float(d.kernel_distance[max(at_end, 0)]),
        "late_distance_final": float(d.late_distance[-1]),
        "norm_error_early": norm_error,
        "switch_step_50": None if m is None else m.step_50,
        "switch_width": None if m is None else m.width,
        "final_norm": float(norm[-1]),
    }
    arrays = {"steps": traj.steps, "kernel_distance": d.kernel_distance, "late_distance": d.late_distance,
              "predicted_norm": predicted_norm}
    return Results(values, arrays, {"run": traj})


def plot(results: Results, out: Path, title: str) -> list[Path]:
    a, v = results.arrays, results.values
    marks = {"t* = ln α / (ηλ)": v["t_star_steps"]}
    if v["switch_step_50"] is not None:
        marks["measured switch (50%)"] = v["switch_step_50"]
    curves = {"to max-L2-margin (kernel)": a["kernel_distance"], "to max-L1-margin (rich)": a["late_distance"]}
    references = {"max-L2 margin (kernel), test": v["l2_test_acc"], "max-L1 margin (late), test": v["l1_test_acc"]}
    return [plots.plot_trajectory(results.trajectories["run"], out / "figure.png", title, curves=curves,
                                  marks=marks, norm_prediction=a["predicted_norm"], references=references)]


def limit_checks(v: dict, c: dict) -> list[Check]:
    """The checks fig1a and fig1b share.

    They are the plateau and the end at the two limits, the kernel-phase distance, and the switch time against t*.
    """
    plateau = v["plateau_test_acc"] if v["plateau_test_acc"] is not None else math.nan
    return [
        Check.close("plateau = kernel", "plateau test acc = max-L2-margin classifier's", v["l2_test_acc"],
                    plateau, atol=c["plateau_atol"]),
        Check.bound("at the kernel predictor", "distance to the max-L2-margin direction at half the switch time",
                    v["kernel_distance_at_window_end"], high=c["kernel_distance_max"]),
        Check.close("final = max-L1-margin", "final test acc = max-L1-margin classifier's", v["l1_test_acc"],
                    v["final_test_acc"], atol=c["final_atol"]),
        Check.bound("switch time", "measured switch (50%) / t*, t* = ln α / (ηλ)",
                    (v["switch_step_50"] or math.nan) / v["t_star_steps"], low=c["switch_low"],
                    high=c["switch_high"]),
    ]


def figure_checks(values: dict, figure: dict | None) -> list[Check]:
    """At paper scale: the measured values against the numbers read off the paper's figure (docs/paper.md §3.2)."""
    if not figure:
        return []
    out = []
    for key, atol in (("plateau_test_acc", 0.03), ("final_test_acc", 0.03)):
        if key in figure:
            measured = values[key] if values[key] is not None else math.nan
            out.append(Check.close(f"figure: {key}", f"the figure's {key.replace('_', ' ')}", figure[key],
                                   measured, atol=atol))
    if "final_norm" in figure:
        out.append(Check.close("figure: final norm", "the figure's final ||θ||", figure["final_norm"],
                               values["final_norm"], rtol=0.1))
    if "switch_steps" in figure:
        low, high = figure["switch_steps"]
        out.append(Check.bound("figure: switch", "measured switch (50%) inside the figure's rise",
                               values["switch_step_50"] or math.nan, low=low, high=high))
    return out
