"""When does the switch happen? The switch time against ln(alpha) and against 1/lambda (docs/paper.md §4).

Theorems 3.4/3.5 put the switch at t* = (1/lambda) ln(alpha) up to lower-order terms, and the window
[(1 - c), (1 + c)] t* shrinks relative to t* as alpha grows. Measured on the diagonal net of Fig. 1a (one
dataset, several alpha at fixed lambda and several lambda at fixed alpha): two sweeps through
``dichotomy sweep``'s path (dichotomy/experiments/sweep.py: one batch of the backend's engine each), analyzed
by ``dichotomy phase``'s (dichotomy/experiments/phase.py): the 50% point of the test-accuracy rise, its 10-90%
width, and linear fits with their 95% intervals.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dichotomy import errors, plots
from dichotomy.experiments import phase, runs, sweep
from dichotomy.run import trajectory
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
# What the paper scale costs on a 2-core CPU (docs/validation-paper.md): `validate --paper` shows it first.
PAPER_COST = {"hours": 17.0, "memory_gb": 1.0, "basis": "4 x 2e6 + 4 x 4e6 steps of fig1a x 2.6 ms"}

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


@contextmanager
def _workdir(backend):
    """Where the claim's two sweeps live while it computes; removed when the claim is computed.

    That is its checkpoints folder (a killed claim resumes them), or a temporary folder when it does not checkpoint.
    """
    if backend.checkpoints is None:
        with tempfile.TemporaryDirectory(prefix="dichotomy-scaling-") as tmp:
            yield Path(tmp)
        return
    folder = backend.checkpoints.folder / "sweeps"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _sweep(config: dict, folder: Path, backend, axis: str, values: list, fixed: dict, steps: int, progress: bool):
    """One axis swept at the run's overrides plus ``fixed``: (cells, fits, trajectories).

    The sweep goes through ``dichotomy sweep``'s path (one batch of the backend's engine) and is analyzed by
    ``dichotomy phase``'s. It returns (the cells in ``values`` order, the axis's fits, the runs' trajectories).
    """
    overrides = {k: v for k, v in {**config["run"].get("overrides", {}), **fixed}.items() if k != "steps"}
    g = sweep.grid(config["run"]["preset"], {**{k: [v] for k, v in overrides.items()}, axis: list(values)},
                   seeds=[0], steps=steps)
    outcome = sweep.run(g, folder, backend=backend.name, workers=1, progress=progress)
    if outcome.failed:
        key, reason = next(iter(outcome.failed.items()))
        raise errors.DichotomyError(f"scaling: a run of the {axis} sweep failed ({key}): {reason}")
    result = phase.analyze(phase.load(folder))
    cells = sorted(result["cells"], key=lambda c: values.index(c["coords"][axis]))
    for c in cells:
        if c["runs"][0]["status"] != "completed":
            raise errors.DichotomyError(f"scaling: the run at {axis} = {c['coords'][axis]:g} is "
                                        f"{c['runs'][0]['status']}; try a smaller learning rate")
    trajs = [trajectory.load(sweep.run_folder(folder, r.key) / "trajectory")
             for r in sweep.plan(g, backend=backend.name)]
    return cells, result["fits"], trajs


def _switch(cells: list[dict], key: str) -> np.ndarray:
    return np.array([math.nan if c[key] is None else c[key] for c in cells])


def compute(config: dict, backend, progress: bool = False) -> Results:
    preset = runs.preset_of(config["run"])
    lr, steps = preset.lr, preset.steps
    with _workdir(backend) as work:
        cells_a, fits_a, trajs_a = _sweep(config, work / "alpha", backend, "alpha", config["alphas"],
                                          {"wd": config["wd_fixed"]}, steps, progress)
        cells_w, fits_w, trajs_w = _sweep(config, work / "wd", backend, "wd", config["wds"],
                                          {"alpha": config["alpha_fixed"]}, config["steps_wds"], progress)
    alphas, wds = np.array(config["alphas"]), np.array(config["wds"])
    s_a, w_a = _switch(cells_a, "switch_step"), _switch(cells_a, "width")
    s_w, w_w = _switch(cells_w, "switch_step"), _switch(cells_w, "width")
    f_a = (fits_a["ln_alpha"]["groups"] or [{"slope": None, "intercept": None, "r2": None}])[0]  # steps vs ln alpha
    f_w = (fits_w["inv_wd"]["groups"] or [{"slope": None, "intercept": None, "r2": None}])[0]    # time vs 1/lambda
    d = trajs_a[0].config["model_config"]["d"]
    t_star_a = np.log(alphas) / (lr * config["wd_fixed"])
    nan = math.nan
    values = {"lr": lr, "wd_fixed": config["wd_fixed"], "alpha_fixed": config["alpha_fixed"], "d": d,
              "slope_ln_alpha": f_a["slope"] or nan, "r2_ln_alpha": f_a["r2"] or nan,
              "slope_inv_wd": f_w["slope"] or nan, "r2_inv_wd": f_w["r2"] or nan,
              "slope_ln_alpha_ci": f_a.get("slope_ci"), "slope_inv_wd_ci": f_w.get("slope_ci"),
              "intercept_ln_alpha": f_a["intercept"] or nan, "intercept_inv_wd": f_w["intercept"] or nan,
              "width_over_t_star": (w_a / t_star_a).tolist()}
    arrays = {"alphas": alphas, "step50_alpha": s_a, "width_alpha": w_a, "wds": wds, "step50_wd": s_w,
              "width_wd": w_w}
    trajs = {f"alpha_{a:g}": t for a, t in zip(alphas, trajs_a, strict=True)}
    trajs.update({f"wd_{w:g}": t for w, t in zip(wds, trajs_w, strict=True)})
    return Results(values, arrays, trajs)


def plot(results: Results, out: Path) -> list[Path]:
    plt = plots.pyplot()
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
