"""When does the switch happen? The transition time against ln(alpha) and against 1/lambda (docs/paper.md §4).

Theorems 3.4/3.5 put the switch at t* = (1/lambda) ln(alpha) up to lower-order terms, and the window
[(1 - c), (1 + c)] t* shrinks relative to t* as alpha grows. Measured on the diagonal net of Fig. 1a (one
dataset, several alpha at fixed lambda and several lambda at fixed alpha; on the numba backend each sweep is
one batched run): the 50% point of the test-accuracy rise, its 10-90% width, and linear fits.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dichotomy.refimpl.limits import transition
from dichotomy.validation import plots, runs
from dichotomy.validation.claim import Check, Results

TITLE = "Scaling of the transition time with ln α and 1/λ (diagonal net)"
CLAIM = ("The switch happens at t ≈ (1/λ) ln α: at fixed λ the measured time grows linearly in ln α with slope "
         "1/λ; at fixed α it grows linearly in 1/λ with slope ln α (defined up to the normalization of θ̄: "
         "between ln(α/√(2d)) and ln α for the diagonal net); its width shrinks relative to t* as α grows "
         "(Theorems 3.4, 3.5).")

# Tolerances (docs/validation.md#scaling): slope in ln(alpha) within 25% of 1/(eta lambda) (the
# O(log log A) term changes slowly with alpha); slope in 1/lambda inside the convention window widened by 20%;
# both fits linear with R^2 >= 0.95.
_CHECKS = {"slope_rtol": 0.25, "window_slack": 0.2, "r2_min": 0.95}
_RUN = {"preset": "fig1a-quick"}
CONFIGS = {
    "quick": {"run": {**_RUN, "overrides": {"steps": 120_000}}, "alphas": [128.0, 512.0, 2048.0, 8192.0],
              "wd_fixed": 1e-2, "wds": [1e-2, 2e-2, 4e-2, 8e-2], "alpha_fixed": 128.0,
              "steps_wds": 60_000, "checks": _CHECKS},
    "paper": {"run": {"preset": "fig1a", "overrides": {"steps": 2_000_000}}, "alphas": [32.0, 128.0, 512.0, 2048.0],
              "wd_fixed": 1e-3, "wds": [5e-4, 1e-3, 2e-3, 4e-3], "alpha_fixed": 128.0, "steps_wds": 4_000_000,
              "checks": _CHECKS},
    "test": {"run": {**_RUN, "overrides": {"d": 300, "n_train": 30, "n_test": 300, "steps": 30_000}},
             "alphas": [64.0, 256.0, 1024.0], "wd_fixed": 4e-2, "wds": [2e-2, 4e-2, 8e-2], "alpha_fixed": 64.0,
             "steps_wds": 30_000, "checks": _CHECKS},
}


def _measure(trajs):
    step50, width = [], []
    for traj in trajs:
        t = transition.measured_transition(traj)
        step50.append(math.nan if t is None else t.step_50)
        width.append(math.nan if t is None else t.width)
    return np.array(step50), np.array(width)


def compute(config: dict, backend, progress: bool = False) -> Results:
    lr = runs.preset_of(config["run"]).lr
    spec_a = {**config["run"], "overrides": {**config["run"].get("overrides", {}), "wd": config["wd_fixed"]}}
    by_alpha = runs.sweep(spec_a, backend, [{"alpha": a} for a in config["alphas"]], progress=progress)
    spec_w = {**config["run"], "overrides": {**config["run"].get("overrides", {}), "steps": config["steps_wds"],
                                             "alpha": config["alpha_fixed"]}}
    by_wd = runs.sweep(spec_w, backend, [{"wd": w} for w in config["wds"]], progress=progress)
    alphas, wds = np.array(config["alphas"]), np.array(config["wds"])
    s_a, w_a = _measure([r.traj for r in by_alpha])
    s_w, w_w = _measure([r.traj for r in by_wd])
    slope_a, icpt_a, r2_a = runs.linear_fit(np.log(alphas), s_a)           # steps against ln alpha
    slope_w, icpt_w, r2_w = runs.linear_fit(1.0 / wds, lr * s_w)            # time against 1/lambda
    d = by_alpha[0].config.d
    t_star_a = np.log(alphas) / (lr * config["wd_fixed"])
    values = {"lr": lr, "wd_fixed": config["wd_fixed"], "alpha_fixed": config["alpha_fixed"], "d": d,
              "slope_ln_alpha": slope_a, "r2_ln_alpha": r2_a, "slope_inv_wd": slope_w, "r2_inv_wd": r2_w,
              "intercept_ln_alpha": icpt_a, "intercept_inv_wd": icpt_w,
              "width_over_t_star": (w_a / t_star_a).tolist()}
    arrays = {"alphas": alphas, "step50_alpha": s_a, "width_alpha": w_a, "wds": wds, "step50_wd": s_w,
              "width_wd": w_w}
    trajs = {f"alpha_{a:g}": r.traj for a, r in zip(alphas, by_alpha, strict=True)}
    trajs.update({f"wd_{w:g}": r.traj for w, r in zip(wds, by_wd, strict=True)})
    return Results(values, arrays, trajs)


def plot(results: Results, out: Path) -> list[Path]:
    a, v = results.arrays, results.values
    lr = v["lr"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.log(a["alphas"])
    left.errorbar(x, a["step50_alpha"], yerr=a["width_alpha"] / 2, fmt="o", capsize=3, label="measured (50%, ±width/2)")
    left.plot(x, v["slope_ln_alpha"] * x + v["intercept_ln_alpha"], "k-", lw=1,
              label=f"fit: slope {v['slope_ln_alpha']:.3g} steps")
    left.plot(x, x / (lr * v["wd_fixed"]), "k:", label=f"t* = ln α/(ηλ): slope {1 / (lr * v['wd_fixed']):.3g}")
    left.set_xlabel("ln α (α = ||θ₀||)")
    left.set_ylabel("transition step")
    left.set_title(f"fixed λ = {v['wd_fixed']:g}")
    xi = 1.0 / a["wds"]
    right.plot(xi, lr * a["step50_wd"], "o", label="measured (50%)")
    right.plot(xi, v["slope_inv_wd"] * xi + v["intercept_inv_wd"], "k-", lw=1,
               label=f"fit: slope {v['slope_inv_wd']:.3g}")
    for alpha, style, name in ((v["alpha_fixed"], ":", "ln α"),
                               (v["alpha_fixed"] / math.sqrt(2 * v["d"]), "--", "ln(α/√(2d))")):
        right.plot(xi, math.log(alpha) * xi, "k", ls=style, lw=1, label=f"slope {name} = {math.log(alpha):.3g}")
    right.set_xlabel("1/λ")
    right.set_ylabel("transition time t = η · step")
    right.set_title(f"fixed α = {v['alpha_fixed']:g}")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return plots.save(fig, out, TITLE, dpi=120)


def check(results: Results, config: dict) -> list[Check]:
    v, c = results.values, config["checks"]
    lr, alpha, d = v["lr"], v["alpha_fixed"], v["d"]
    low, high = math.log(alpha / math.sqrt(2 * d)), math.log(alpha)
    slack = c["window_slack"]
    width = np.array([x if x is not None else math.nan for x in v["width_over_t_star"]])
    return [
        Check.close("slope in ln α", "d(step)/d(ln α) at fixed λ = 1/(ηλ)", 1.0 / (lr * v["wd_fixed"]),
                    v["slope_ln_alpha"], rtol=c["slope_rtol"]),
        Check.bound("linear in ln α", "R² of step against ln α", v["r2_ln_alpha"], low=c["r2_min"]),
        Check.bound("slope in 1/λ", f"d(time)/d(1/λ) at fixed α inside [ln(α/√(2d)), ln α] = "
                    f"[{low:.3g}, {high:.3g}] ±{100 * slack:g}%", v["slope_inv_wd"],
                    low=min(low, high) * (1 - slack) if low > 0 else -slack * high, high=high * (1 + slack)),
        Check.bound("linear in 1/λ", "R² of time against 1/λ", v["r2_inv_wd"], low=c["r2_min"]),
        Check.holds("sharper with α", "width / t* at the largest α < at the smallest α", float(width[-1]),
                    bool(width[-1] < width[0]), f"< {width[0]:.3g}"),
    ]
