"""Fig. 3: matrix completion by W = U U^T - V V^T from U = V = alpha I (Corollary 3.11, Theorem 3.12).

The kernel phase fits the observed entries (and their transposes) and leaves every other entry at 0, so the
test MSE sits at the kernel (K2) prediction's; after t* = ln(alpha) / lambda, W moves to the minimum
nuclear-norm completion and the test MSE falls to ~0, with ||theta||^2 -> ||W||_* (a balanced factorization).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dichotomy import diagnosis, plots
from dichotomy.experiments import runs
from dichotomy.refimpl import losses
from dichotomy.validation import readings, switch
from dichotomy.validation.claim import Check, Results

TITLE = "Matrix completion: kernel plateau, then the min-nuclear-norm completion (Fig. 3)"
CLAIM = ("The test MSE plateaus at the kernel predictor's (observed entries and their transposes fitted, the "
         "rest 0; ≈ 0.1023 in the paper), then drops to ≈ 0 as W approaches the minimum-nuclear-norm "
         "completion, with ||θ||² → ||W||_* ≈ ||X*||_* (paper: 5.61² vs 5.64²) (Corollary 3.11, Theorem 3.12).")

# Tolerances (docs/validation.md#fig3). Plateau: K2's test MSE +- 1% (the kernel limit is exact up to
# O(1/alpha^2) terms). The final state carries a lambda bias (Theorem 3.12: ||W - X*|| <~ sqrt(lambda ||X*||_*)),
# hence 15% on ||theta||^2 / ||W_nuc||_* and 0.15 on the relative distance at quick scale's lambda = 1e-3.
_CHECKS = {"plateau_rtol": 0.01, "drop_max": 0.05, "norm_rtol": 0.15, "late_distance_max": 0.15,
           "balance_rtol": 0.01, "switch_low": 0.5, "switch_high": 2.5}
# What the paper scale costs on a 2-core CPU (docs/validation-paper.md): `validate --paper` shows it first.
PAPER_COST = {"hours": 0.13, "memory_gb": 0.1, "basis": "1e7 steps x 42 us (bench mc); measured 460 s"}
PAPER_COST_FLOW = {"hours": 0.02, "memory_gb": 0.1,
                   "basis": "the flow, 64,870 gradients: 16 s measured; GD beside it for 1e6 steps"}

CONFIGS = {
    "quick": {"run": {"preset": "fig3-quick", "overrides": {"wd": 1e-3, "steps": 150_000}}, "checks": _CHECKS},
    "paper": {"run": {"preset": "fig3"}, "checks": {**_CHECKS, "norm_rtol": 0.03, "late_distance_max": 0.05},
              "figure": {"plateau_test_mse": 0.1023, "final_norm": 5.61},
              # Fig. 3 read point by point (docs/paper.md §3, "Fig. 3"), tolerances fixed before the paper run:
              # the plateau to 2% (our 5% mask is another draw than the paper's), the fall to ~0.01 absolute
              # (reading a curve off the figure), the norm to 1% (it follows a formula) and 3% at the end.
              "readings": {"step_rtol": 0.2, "points": [
                  {"metric": "test_loss", "step": 0, "value": 0.1077, "rtol": 0.02},
                  {"metric": "test_loss", "step": 1e3, "value": 0.1023, "rtol": 0.02},
                  {"metric": "test_loss", "step": 1e5, "value": 0.1023, "rtol": 0.02},
                  {"metric": "test_loss", "step": 2.4e5, "value": 0.097, "atol": 0.01},
                  {"metric": "test_loss", "step": 3.3e5, "value": 0.064, "atol": 0.015},
                  {"metric": "test_loss", "step": 4.3e5, "value": 0.030, "atol": 0.01},
                  {"metric": "test_loss", "step": 5.9e5, "value": 0.007, "atol": 0.005},
                  {"metric": "test_loss", "step": 1e6, "value": 4e-4, "atol": 2e-3},
                  {"metric": "param_norm", "step": 5.1e4, "value": 83.6, "rtol": 0.01},
                  {"metric": "param_norm", "step": 1e7, "value": 5.61, "rtol": 0.03}]}},
    "test": {"run": {"preset": "fig3-quick", "overrides": {"d": 30, "train_fraction": 0.3, "wd": 1e-2,
                                                             "steps": 20_000}},
             "checks": _CHECKS},
}


# The gradient-flow version (`dichotomy validate --flow`, validation/agreement.py): see fig1a.FLOW.
FLOW = {"quick": {"gd_prefix": 150_000, "gd_agreement": 0.01}, "paper": {"gd_prefix": 1_000_000, "gd_agreement": 0.01},
        "test": {"gd_prefix": 20_000, "gd_agreement": 0.01}}


def compute(config: dict, backend, progress: bool = False) -> Results:
    run = runs.train(config["run"], backend, progress=progress, label="matrix factorization")
    traj, data, cfg = run.traj, run.data, run.config
    lr, wd = run.preset.lr, run.preset.wd
    d = diagnosis.diagnose(traj, run.module, cfg, run.params0, data, run.probe, lr=lr, wd=wd)
    kp, completion = d.kernel.solved(), d.late.solved()  # K2 and the nuclear-norm SDP, solved once
    kernel_test_mse = losses.value_and_grad("squared", kp.predict(run.module, cfg, data.X_test), data.y_test)[0]
    nuc_test_mse = float(np.mean((completion.W[data.X_test[:, 0], data.X_test[:, 1]] - data.y_test) ** 2))
    U, V = traj.params["U"], traj.params["V"]
    W = U @ U.T - V @ V.T
    norm = traj.metrics["param_norm"]
    m = d.measured
    predicted_norm, norm_error = switch.norm_decay(traj, lr, wd, switch.kernel_phase_end(d.predicted["steps"], m))
    values = {
        "t_star_steps": d.predicted["steps"], "kernel_test_mse": kernel_test_mse,
        "nuclear_test_mse": nuc_test_mse, "nuclear_norm_completion": completion.nuclear_norm,
        "nuclear_norm_truth": float(np.sum((np.arange(cfg.d) / cfg.d) ** 2)),  # X* = u u^T, u = arange(d)/d
        "plateau_test_mse": None if m is None else m.plateau,
        "final_test_mse": float(traj.metrics["test_loss"][-1]),
        "fit_step": diagnosis.fit_step(traj),
        "final_norm": float(norm[-1]), "final_norm_sq": float(norm[-1] ** 2),
        "final_W_nuclear_norm": float(np.linalg.norm(W, "nuc")),
        "late_distance_final": float(d.late_distance[-1]),
        "norm_error_early": norm_error,
        "switch_step_50": None if m is None else m.step_50,
        "switch_width": None if m is None else m.width,
    }
    arrays = {"steps": traj.steps, "kernel_distance": d.kernel_distance, "late_distance": d.late_distance,
              "predicted_norm": predicted_norm}
    return Results(values, arrays, {"run": traj})


def plot(results: Results, out: Path) -> list[Path]:
    a, v = results.arrays, results.values
    marks = {"t* = ln α / (ηλ)": v["t_star_steps"]}
    if v["switch_step_50"] is not None:
        marks["measured switch (50%)"] = v["switch_step_50"]
    curves = {"to the kernel (K2) completion": a["kernel_distance"],
              "to the min-nuclear-norm completion": a["late_distance"]}
    references = {"kernel (K2) limit, test": v["kernel_test_mse"], "nuclear-norm limit, test": v["nuclear_test_mse"]}
    return [plots.plot_trajectory(results.trajectories["run"], out / "figure.png", TITLE, curves=curves,
                                  marks=marks, norm_prediction=a["predicted_norm"], references=references)]


def check(results: Results, config: dict) -> list[Check]:
    v, c = results.values, config["checks"]
    nan = float("nan")
    plateau = v["plateau_test_mse"] if v["plateau_test_mse"] is not None else nan
    out = [
        Check.close("plateau = kernel", "test-MSE plateau = kernel (K2) prediction's test MSE", v["kernel_test_mse"],
                    plateau, rtol=c["plateau_rtol"]),
        Check.bound("drop", "final test MSE / plateau", v["final_test_mse"] / plateau, high=c["drop_max"]),
        Check.close("norm -> nuclear norm", "final ||θ||² = ||W_nuc||_* of the min-nuclear-norm completion",
                    v["nuclear_norm_completion"], v["final_norm_sq"], rtol=c["norm_rtol"]),
        Check.close("balanced", "final ||θ||² = ||W||_* (a stationary point of the λ-problem is balanced)",
                    v["final_W_nuclear_norm"], v["final_norm_sq"], rtol=c["balance_rtol"]),
        Check.bound("at the nuclear-norm completion", "final relative distance to the min-nuclear-norm completion",
                    v["late_distance_final"], high=c["late_distance_max"]),
        Check.close("norm decay", "max over the kernel phase of |‖θ_s‖ / (‖θ₀‖(1−ηλ)^s) − 1|", 0.0,
                    v["norm_error_early"] if v["norm_error_early"] is not None else nan, atol=0.02),
        Check.bound("switch time", "measured switch (50%) / t*, t* = ln α / (ηλ)",
                    (v["switch_step_50"] or nan) / v["t_star_steps"], low=c["switch_low"], high=c["switch_high"]),
    ]
    figure = config.get("figure")
    if figure:
        out += [Check.close("figure: plateau", "Fig. 3 plateau test MSE", figure["plateau_test_mse"], plateau,
                            rtol=0.02),
                Check.close("figure: final norm", "Fig. 3 final ||θ||", figure["final_norm"], v["final_norm"],
                            rtol=0.03)]
    if "readings" in config:
        out += readings.checks(results.trajectories["run"], config["readings"]["points"],
                               config["readings"]["step_rtol"], "Fig. 3")
    return out

