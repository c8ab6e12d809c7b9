"""Fig. 4: modular addition without weight decay, at the loss-normalized learning rate eta / L(theta).

Without weight decay nothing pulls the net out of the kernel regime in (1/lambda) log alpha time; the
implicit bias of the loss alone (Lyu & Li's margin maximization) still moves it towards a max-margin
solution, but only on a log-log time scale, with ||theta||^2 growing like log t (L = 2). The loss-normalized
schedule makes that regime reachable; the loss and the time live in log space (``driver.run(...,
schedule=LossNormalized(eta))``, refimpl/steppers.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dichotomy import diagnosis, plots
from dichotomy.experiments import presets, runs
from dichotomy.kernels import get_backend
from dichotomy.refimpl.steppers import LossNormalized
from dichotomy.validation.claim import Check, Results

TITLE = "No weight decay: grokking on a log-log time scale (Fig. 4)"
CLAIM = ("With λ = 0 and the learning rate η/L(θ), the net fits the training set while test accuracy stays "
         "near 0, and test accuracy then rises only slowly, over many decades of log t; ||θ||² grows like "
         "log t (Appendix B.1, Fig. 4).")

# Tolerances (docs/validation.md#fig4): the rise must start only after log t has grown `late_factor`-fold
# from the fit, gain at least `rise_min`, and ||theta||^2 must be affine in ln t with R^2 >= 0.9.
_CHECKS = {"at_fit_max": 0.1, "rise_min": 0.2, "late_factor": 3.0, "r2_min": 0.9, "level": 0.1}
# What the paper scale costs on a 2-core CPU (docs/validation-paper.md): `validate --paper` shows it first.
PAPER_COST = {"hours": 310.0, "memory_gb": 0.1, "basis": "1e7 steps x 110 ms on the numpy engine"}

CONFIGS = {
    "quick": {"run": {"preset": "fig2a-quick", "overrides": {"p": 23, "h": 64, "train_fraction": 0.85,
                                                               "wd": 0.0, "steps": 20_000}},
              "eta": 0.05, "warmup_lr": 0.5, "switch_log_loss": -5.0, "checks": _CHECKS},
    "paper": {"run": {"preset": "fig2a", "overrides": {"wd": 0.0, "steps": 10_000_000}},
              "eta": 0.01, "warmup_lr": 0.1, "switch_log_loss": -5.0, "checks": _CHECKS,
              "figure": {"log10_time_at_10pct": 160.0}},
    "test": {"run": {"preset": "fig2a-quick", "overrides": {"p": 11, "h": 16, "train_fraction": 0.8,
                                                              "wd": 0.0, "steps": 2500}},
             "eta": 0.05, "warmup_lr": 0.5, "switch_log_loss": -5.0, "checks": _CHECKS},
}


def compute(config: dict, backend, progress: bool = False) -> Results:
    """Trains on ``backend`` if it has the loss-normalized schedule, else on the NumPy reference.

    The report's notes say which.
    """
    preset = runs.preset_of(config["run"])
    module, cfg, params, data = presets.build(preset)
    schedule = LossNormalized(eta=config["eta"], switch_log_loss=config["switch_log_loss"])
    notes = []
    if backend.unsupported(module, [], data, "float64", schedule) is not None:
        notes.append(f"Run on the NumPy reference: the {backend.name} backend has no loss-normalized schedule.")
        backend = get_backend("numpy").checkpointed(backend.checkpoints)
    traj = backend.run(module, cfg, params, data, lr=config["warmup_lr"], wd=0.0, steps=preset.steps,
                       schedule=schedule, record=runs.schedule(preset.steps), progress=progress)
    m, steps = traj.metrics, traj.steps
    fit = diagnosis.fit_step(traj)
    # ||theta||^2 against ln t, in the normalized phase (from the first recorded step past the switch)
    after = (steps >= fit) & (np.cumsum(m["train_log_loss"] <= config["switch_log_loss"]) > 0)
    slope, _, r2 = runs.linear_fit(m["log_time"][after], m["param_norm"][after] ** 2, min_points=3)
    level = config["checks"]["level"]
    hits = np.flatnonzero((steps >= fit) & (m["test_acc"] >= level))
    log10 = m["log_time"] / math.log(10)
    values = {
        "fit_step": fit, "log10_time_at_fit": float(runs.at_steps(traj, "log_time", [fit])[0] / math.log(10)),
        "test_at_fit": float(runs.at_steps(traj, "test_acc", [fit])[0]),
        "final_test": float(m["test_acc"][-1]), "final_log10_time": float(log10[-1]),
        "min_train_after_fit": float(np.min(m["train_acc"][steps >= fit])),
        "log10_time_at_level": float(log10[hits[0]]) if hits.size else None,
        "norm_sq_slope": float(slope), "norm_sq_r2": float(r2), "final_log_loss": float(m["train_log_loss"][-1]),
        "notes": notes, "backend": backend.name,  # the backend it ran on (the report's config says so)
    }
    return Results(values, {}, {"run": traj})


def plot(results: Results, out: Path) -> list[Path]:
    return plots.save(figure(results), out, TITLE, dpi=120)


def figure(results: Results):
    """Accuracies and ||theta||^2 against log10(1 + t) on a logarithmic axis, as the paper draws Fig. 4."""
    plt = plots.pyplot()
    traj = results.trajectories["run"]
    m = traj.metrics
    x = np.log10(1.0 + np.exp(np.minimum(m["log_time"], 700.0)))
    x = np.where(m["log_time"] > 700.0, m["log_time"] / math.log(10), x)  # log10(1 + t) = log10 t for huge t
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, 100 * m["train_acc"], color="tab:blue", label="train")
    ax.plot(x, 100 * m["test_acc"], color="tab:red", label="test")
    ax.set_xscale("log")  # the rise sits in decades of log t: on a linear axis it filled 5% of the width
    ax.set_xlabel("log10(1 + t), log scale; t = Σ η/L (continuous time)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    twin = ax.twinx()
    twin.plot(x, m["param_norm"] ** 2, color="tab:gray", ls="--", label="||θ||²")
    twin.set_ylabel("||θ||²", color="tab:gray")
    handles, labels = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(handles + extra[0], labels + extra[1], loc="lower left", bbox_to_anchor=(0.0, 1.02, 1.0, 0.2),
              mode="expand", ncol=3, borderaxespad=0.0, fontsize="small", frameon=False)
    return fig


def check(results: Results, config: dict) -> list[Check]:
    v, c = results.values, config["checks"]
    at_level = v["log10_time_at_level"] if v["log10_time_at_level"] is not None else math.nan
    out = [
        Check.bound("train fit kept", "train accuracy after it first reaches 100%", v["min_train_after_fit"],
                    low=0.99),
        Check.bound("memorization", "test accuracy when train accuracy first hits 100%", v["test_at_fit"],
                    high=c["at_fit_max"]),
        Check.bound("slow rise", "final test acc − test acc at fit", v["final_test"] - v["test_at_fit"],
                    low=c["rise_min"]),
        Check.bound("log-log time", f"log10 t at {c['level']:.0%} test acc / log10 t at fit",
                    at_level / max(v["log10_time_at_fit"], 1e-12), low=c["late_factor"]),
        Check.bound("norm ~ sqrt(log t)", "R² of ||θ||² = a + b ln t after the fit", v["norm_sq_r2"],
                    low=c["r2_min"]),
        Check.bound("norm grows", "slope b of ||θ||² against ln t", v["norm_sq_slope"], low=0.0),
    ]
    figure = config.get("figure")
    if figure:
        out.append(Check.close("figure: 10% point", "Fig. 4b log10 t at 10% test accuracy",
                               figure["log10_time_at_10pct"], at_level, rtol=0.3))
    return out
