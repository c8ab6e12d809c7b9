"""Fig. 1a: grokking of a diagonal linear net on sparse +-1 data (Corollaries 3.6 and 3.7).

From ||theta_0|| = alpha with weight decay lambda, the net fits the training set at once with the
max-L2-margin (kernel) classifier, which generalizes at chance on k-sparse data with n << d; near
t* = ln(alpha) / lambda it switches to the max-L1-margin classifier, which generalizes perfectly. Until then
the norm decays as ||theta_0|| e^{-eta lambda step}.
"""

from __future__ import annotations

from pathlib import Path

from dichotomy.validation import readings, switch
from dichotomy.validation.claim import Check, Results

TITLE = "Grokking: diagonal net, sparse ±1 data (Fig. 1a)"
CLAIM = ("Test accuracy sits near chance while the predictor is the max-L2-margin (kernel) classifier, then "
         "rises sharply to ~100% as it moves to the max-L1-margin classifier, near t* = ln α / λ; during the "
         "plateau ||θ|| ≈ ||θ₀|| e^{−ηλ·step} (Corollaries 3.6, 3.7; §3.2.3).")

# Tolerances (docs/validation.md#fig1a): the plateau and final accuracies are the exact limits' test
# accuracies +- 0.05 / 0.02; the distances bound how close the run is to each limit direction; the switch
# may come anywhere in [0.3, 1.2] t* (Theorem 3.4/3.5 are asymptotic; O(log log A / lambda) corrections and
# the alpha convention move it; the paper's own Fig. 1a switches at 0.4-0.75 t*).
_CHECKS = {"plateau_atol": 0.05, "final_atol": 0.02, "kernel_distance_max": 0.1, "late_distance_max": 0.15,
           "norm_rtol": 0.02, "switch_low": 0.3, "switch_high": 1.2}
# What the paper scale costs on a 2-core CPU (docs/validation-paper.md): `validate --paper` shows it first.
PAPER_COST = {"hours": 1.4, "memory_gb": 1.0, "basis": "2e6 steps x 2.6 ms (bench diag-100k, 2 cores); measured 1.5 h"}
PAPER_COST_FLOW = {"hours": 0.07, "memory_gb": 1.0,
                   "basis": "the flow, 2992 gradients: 174 s measured; GD beside it for 2e4 steps"}

CONFIGS = {
    "quick": {"run": {"preset": "fig1a-quick"}, "checks": _CHECKS},
    "paper": {"run": {"preset": "fig1a"}, "checks": _CHECKS,
              "figure": {"plateau_test_acc": 0.515, "final_test_acc": 1.0, "final_norm": 4.33,
                         "switch_steps": [2.0e5, 3.6e5]},
              # Fig. 1a read point by point (docs/paper.md §3, "Fig. 1a"), tolerances fixed before the paper run:
              # accuracies to 0.03 on the plateau and at the end, 0.1 on the rise (steep there, and timed by the
              # data draw); the norm to 2% while it follows 128 e^(-lr lambda step), 10% at the end.
              "readings": {"step_rtol": 0.25, "points": [
                  {"metric": "test_acc", "step": 1e4, "value": 0.515, "atol": 0.03},
                  {"metric": "test_acc", "step": 1e5, "value": 0.515, "atol": 0.03},
                  {"metric": "test_acc", "step": 2.85e5, "value": 0.75, "atol": 0.1},
                  {"metric": "test_acc", "step": 3.5e5, "value": 0.98, "atol": 0.03},
                  {"metric": "test_acc", "step": 2e6, "value": 1.0, "atol": 0.03},
                  {"metric": "test_loss", "step": 2.8e5, "value": 0.50, "atol": 0.1},
                  {"metric": "test_loss", "step": 3.6e5, "value": 0.15, "atol": 0.1},
                  {"metric": "param_norm", "step": 2.5e4, "value": 99.7, "rtol": 0.02},
                  {"metric": "param_norm", "step": 4.8e4, "value": 79.2, "rtol": 0.02},
                  {"metric": "param_norm", "step": 9.8e4, "value": 48.1, "rtol": 0.02},
                  {"metric": "param_norm", "step": 1.96e5, "value": 18.4, "rtol": 0.02},
                  {"metric": "param_norm", "step": 2e6, "value": 4.33, "rtol": 0.1}]}},
    "test": {"run": {"preset": "fig1a-quick", "overrides": {"d": 400, "n_train": 40, "n_test": 400,
                                                              "steps": 20_000, "wd": 3e-2}},
             "checks": _CHECKS},
}



# The gradient-flow version (`dichotomy validate --flow`, validation/agreement.py): the run is the flow at the
# times GD reaches; GD itself at the claim's lr is run over a prefix (the whole run at quick scale, what GD
# reaches in about a minute at the paper's) and must stay within ``gd_agreement`` of the flow: the relative parameter
# distance measured 1.6e-4 (fig1a), 1.3e-3 (fig1b, at step 1: GD's first step at lr x sharpness > 2) and 9e-5 (fig3)
# at the paper's scale; the bound, 1e-2, was set after that first run (docs/validation.md, "Through the flow").
FLOW = {"quick": {"gd_prefix": 100_000, "gd_agreement": 0.01}, "paper": {"gd_prefix": 20_000, "gd_agreement": 0.01},
        "test": {"gd_prefix": 20_000, "gd_agreement": 0.01}}

compute = switch.compute


def plot(results: Results, out: Path) -> list[Path]:
    return switch.plot(results, out, TITLE)


def check(results: Results, config: dict) -> list[Check]:
    v, c = results.values, config["checks"]
    return switch.limit_checks(v, c) + [
        Check.bound("train fit", "train accuracy 100% at the end", v["final_train_acc"], low=1.0),
        Check.bound("plateau near chance", "max-L2-margin test acc near chance (n << d)", v["l2_test_acc"],
                    high=0.65),
        Check.bound("grokking", "final test accuracy near 100%", v["final_test_acc"], low=0.95),
        Check.bound("at the L1 predictor", "final distance to max-L1-margin direction", v["late_distance_final"],
                    high=c["late_distance_max"]),
        Check.close("norm decay", "max over the kernel phase of |‖θ_s‖ / (‖θ₀‖(1−ηλ)^s) − 1|", 0.0,
                    v["norm_error_early"], atol=c["norm_rtol"]),
    ] + switch.figure_checks(v, config.get("figure")) + (
        readings.checks(results.trajectories["run"], config["readings"]["points"], config["readings"]["step_rtol"],
                        "Fig. 1a") if "readings" in config else [])
