"""The delay law in continuous time: how the switch moves with lr, λ and α (issue 29, claim 2).

The paper puts the switch at t* = ln α / λ in time t = lr × steps: at fixed λ and α it does not depend on the
learning rate, and it scales as 1/λ. Follow-up work reports other laws for its own setting: an empirical fit
T_grok ∝ η^−0.50 λ^−0.64 (in steps, 384 MLP runs on modular arithmetic), and T = (1/(ηλ)) ln(‖θ_mem‖²/‖θ_post‖²)
from the norms at memorization and after grokking. Measured here over grids of (lr, λ, α), with GD and (for the
diagonal net) with the gradient flow: the switch time (the 50% point of the test-accuracy move, dichotomy phase's),
and by least squares, with 95% intervals,

    ln t_switch = c_α + a ln lr + b ln λ     (one intercept per α; predicted a = 0, b = −1; in steps a − 1)
    λ t_switch = k ln α + c                  (pooled; predicted k = 1, c the lower-order term)

and which one-constant law t_switch = C F fits better: F = ln α / λ or F = ln(‖θ_mem‖² / ‖θ_post‖²) / λ (θ_mem at
the first step the training set is fit, θ_post at the end of the switch: the step where the test metric has gone
90% of its way). The intervals assume independent residuals; the residuals are the laws' misfit, so they are
bands of misfit more than sampling intervals. The ReLU net on cross-entropy is outside the theorems
(docs/paper.md §1.5): its runs are measured with the same fits.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from dichotomy import diagnosis, errors, plots
from dichotomy.errors import ConfigError
from dichotomy.experiments import phase, runs
from dichotomy.validation.claim import Check, Results

TITLE = "The delay law: the switch time against lr, λ and α, for GD and the flow (follow-up claim)"
CLAIM = ("At fixed λ and α the switch happens at the same time t = lr × steps for every small lr, and t scales as "
         "(ln α)/λ (the paper's t*); follow-up work fits T_grok ∝ η^−0.50 λ^−0.64 in steps, or "
         "(1/(ηλ)) ln(‖θ_mem‖²/‖θ_post‖²). Measured: the exponents with 95% intervals for GD and the gradient flow, "
         "and which form fits.")

# Tolerances (docs/validation.md#delay_law). Each model's `tolerances`: the largest |measured - predicted| for the lr
# exponent (0 in time), the lambda exponent (-1) and the slope k of lambda t in ln alpha (1); None for k checks only
# that alpha delays the switch (the 95% interval of k above 0). The diagonal net's are the theory's lower-order
# terms at these alpha; the ReLU net's (outside the theorems) were set after exploratory runs at p = 17. `laws`:
# the log-norm-ratio form must fit better than ln alpha / lambda. Every GD switch within flow_rtol of the flow's.
_CHECKS = {"r2_min": 0.95, "flow_rtol": 0.02, "min_dof": 3}
_THEORY = {"lr": 0.05, "wd": 0.1, "ln_alpha": 0.15}
# Each switch is run to `margin` x the largest t* of its batch.
_DIAG = {"preset": "fig1a-quick", "overrides": {"d": 1000, "n_train": 60, "n_test": 1000}}
_MLP = {"preset": "fig2a-quick", "overrides": {"p": 17, "h": 128, "train_fraction": 0.9, "zero_last_layer": True}}
PAPER_COST = {"hours": None, "memory_gb": 0.5, "basis": "the quick grids at the paper's sizes: not projected"}


def _model(run, alpha_field, lrs, wds, alphas, margin, flow, tolerances=_THEORY, laws=True):
    return {"run": run, "alpha_field": alpha_field, "lrs": lrs, "wds": wds, "alphas": alphas, "margin": margin,
            "flow": flow, "tolerances": tolerances, "laws": laws}


_MLP_TOLERANCES = {"lr": 0.1, "wd": 0.25, "ln_alpha": None}


CONFIGS = {
    "quick": {"models": {
        "diagonal net": _model(_DIAG, "alpha", [0.0025, 0.005, 0.01], [4e-2, 8e-2, 1.6e-1], [128.0, 1024.0, 8192.0],
                               2.5, True),
        "relu mlp": _model(_MLP, "init_scale", [0.25, 0.5], [2e-3, 4e-3], [10.0, 30.0, 100.0], 2.5, False,
                           _MLP_TOLERANCES, laws=False)},
        "checks": _CHECKS},
    "paper": {"models": {
        "diagonal net": _model({"preset": "fig1a-quick"}, "alpha", [0.0025, 0.005, 0.01], [1e-2, 2e-2, 4e-2],
                               [128.0, 1024.0, 8192.0], 2.5, True),
        "relu mlp": _model({**_MLP, "overrides": {**_MLP["overrides"], "p": 31, "train_fraction": 0.7}}, "init_scale",
                           [0.125, 0.25, 0.5], [1e-3, 2e-3, 4e-3], [10.0, 30.0, 100.0], 2.5, False, _MLP_TOLERANCES,
                           laws=False)},
        "checks": _CHECKS},
    "test": {"models": {
        "diagonal net": _model({"preset": "fig1a-quick", "overrides": {"d": 300, "n_train": 30, "n_test": 300}},
                               "alpha", [0.005, 0.01], [4e-2, 8e-2, 1.6e-1], [64.0, 1024.0], 2.5, True,
                               laws=False)},  # at d = 300 the two laws fit alike (docs/validation.md#delay_law)
        "checks": _CHECKS},
}


def _switches(batch: list[runs.Run]) -> list[dict]:
    """Each run's switch (dichotomy phase's) and the norms of the log-norm-ratio law."""
    out = []
    for r in batch:
        t = r.traj
        s = phase.run_switch(t.steps, t.metrics, "test_acc")
        mem = float(runs.at_steps(t, "param_norm", [diagnosis.fit_step(t)])[0])
        post = float(np.interp(s["step_90"], t.steps, t.metrics["param_norm"])) if math.isfinite(s["step_90"]) \
            else math.nan
        out.append({"class": s["class"], "step": s["step"], "time": t.config["lr"] * s["step"], "norm_mem": mem,
                    "norm_post": post})
    return out


def _check_grid(name: str, model: dict, min_dof: int) -> None:
    """A ConfigError before any run when the grid cannot give every fit an interval with ``min_dof`` left."""
    sizes = {k: len(model[k]) for k in ("lrs", "wds", "alphas")}
    if min(sizes.values()) < 2:
        raise ConfigError(f"delay_law: the {name} grid needs at least 2 values of each of lrs, wds and alphas, got "
                          f"{sizes}")
    gd = sizes["lrs"] * sizes["wds"] * sizes["alphas"] - (sizes["alphas"] + 2)
    flow = sizes["wds"] * sizes["alphas"] - (sizes["alphas"] + 1) if model["flow"] else min_dof
    if min(gd, flow) < min_dof:  # the pooled line in ln alpha has more: runs - 2
        raise ConfigError(f"delay_law: the {name} grid {sizes} leaves fewer than {min_dof} degrees of freedom to a "
                          "fit's interval (GD: runs - alphas - 2; flow: λ x α - alphas - 1); add λ or α values")


def _grid(name: str, model: dict, backend, progress: bool, flow: bool) -> list[dict]:
    """Every (lr, λ, α) of ``model`` (one lr for the flow: it does not depend on lr), one batch per lr."""
    rows = []
    lrs = model["lrs"][-1:] if flow else model["lrs"]
    t_star = max(math.log(a) for a in model["alphas"]) / min(model["wds"])
    for lr in lrs:
        steps = int(math.ceil(model["margin"] * t_star / lr))
        spec = {"preset": model["run"]["preset"], "overrides": {**model["run"].get("overrides", {}), "lr": lr,
                                                                 "steps": steps}}
        if flow:
            spec["flow"] = {"rtol": 1e-6}
        changes = [{"wd": w, model["alpha_field"]: a} for w, a in itertools.product(model["wds"], model["alphas"])]
        batch = runs.sweep(spec, backend, changes, progress=progress)
        for change, s in zip(changes, _switches(batch), strict=True):
            rows.append({"lr": lr, "wd": change["wd"], "alpha": change[model["alpha_field"]], **s})
    missing = [r for r in rows if r["class"] != "grokking"]
    if missing:
        r = missing[0]
        raise errors.DichotomyError(f"delay_law: the {name} run at lr {r['lr']:g}, λ {r['wd']:g}, α {r['alpha']:g} "
                                    f"shows {r['class']} where a grokking switch was expected")
    return rows


def exponents(rows: list[dict], vary_lr: bool) -> dict:
    """The exponents of lr and λ at fixed α, and the slope of λ t in ln α, each with its 95% interval.

    ln t = c_α + a ln lr + b ln λ by least squares with one intercept per α (so no form in α is assumed), and
    λ t = k ln α + c pooled over every run (the paper: k = 1, c the lower-order term). Returns
    ``{"n", "r2", "lr", "wd", "ln_alpha"}``, each exponent as ``{"value", "ci"}``; ``r2`` is the first fit's.
    """
    alphas = sorted({r["alpha"] for r in rows})
    t = np.log([r["time"] for r in rows])
    names = (["lr"] if vary_lr else []) + ["wd"]
    cols = {"lr": [math.log(r["lr"]) for r in rows], "wd": [math.log(r["wd"]) for r in rows]}
    A = np.column_stack([[float(r["alpha"] == a) for r in rows] for a in alphas] + [cols[n] for n in names])
    coef, ci, r2 = _least_squares(A, t)
    out = {"n": len(rows), "r2": r2}
    for k, n in enumerate(names, start=len(alphas)):
        out[n] = {"value": float(coef[k]), "ci": ci[k]}
    line = phase.fit(np.log([r["alpha"] for r in rows]), [r["wd"] * r["time"] for r in rows], 1.0)
    out["ln_alpha"] = {"value": line["slope"], "ci": line["slope_ci"], "intercept": line["intercept"],
                       "r2": line["r2"]}
    return out


def _least_squares(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[list[float]], float]:
    """Coefficients of y ~ A, their 95% intervals (Student t) and R²; a ConfigError without a degree of freedom."""
    from scipy import stats

    dof = len(y) - A.shape[1]
    if dof < 1 or np.linalg.matrix_rank(A) < A.shape[1]:
        raise ConfigError(f"delay_law: {len(y)} runs cannot fit {A.shape[1]} coefficients with an interval; "
                                 "add lr, λ or α values")
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    se = np.sqrt(np.diag(float(resid @ resid) / dof * np.linalg.inv(A.T @ A)))
    q = float(stats.t.ppf(0.975, dof))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(resid @ resid) / total if total > 0 else math.nan
    return coef, [[float(c - q * e), float(c + q * e)] for c, e in zip(coef, se, strict=True)], r2


def law_fit(rows: list[dict], k: float, c: float) -> dict:
    """Which law fits best: each one's RMS of ln(t / predicted), for three laws.

    t = C F with F = ln α / λ or F = ln(‖θ_mem‖²/‖θ_post‖²) / λ (C fitted), and λ t = k ln α + c with the k and c
    of :func:`exponents`.
    """
    t = np.array([r["time"] for r in rows])
    forms = {"ln_alpha": np.array([math.log(r["alpha"]) / r["wd"] for r in rows]),
             "norm_ratio": np.array([math.log(r["norm_mem"] ** 2 / r["norm_post"] ** 2) / r["wd"]
                                     if r["norm_post"] > 0 else math.nan for r in rows])}
    out = {}
    for name, F in forms.items():
        ok = (F > 0) & np.isfinite(F)
        if not ok.all():
            out[name] = {"constant": math.nan, "rms_log": math.nan, "valid": int(ok.sum())}
            continue
        log_c = float(np.mean(np.log(t) - np.log(F)))
        out[name] = {"constant": math.exp(log_c), "rms_log": float(np.sqrt(np.mean((np.log(t / F) - log_c) ** 2))),
                     "valid": int(ok.sum())}
    wd = np.array([r["wd"] for r in rows])
    ln_a = np.log([r["alpha"] for r in rows])
    out["affine"] = {"k": float(k), "c": float(c),
                     "rms_log": float(np.sqrt(np.mean(np.log(t * wd / (k * ln_a + c)) ** 2)))
                     if np.all(k * ln_a + c > 0) else math.nan, "valid": len(rows)}
    return out


def compute(config: dict, backend, progress: bool = False) -> Results:
    values = {"models": {}}
    for name, model in config["models"].items():
        _check_grid(name, model, config["checks"]["min_dof"])
    for name, model in config["models"].items():
        entry = {}
        for kind in ("gd", "flow") if model["flow"] else ("gd",):
            rows = _grid(name, model, backend, progress, flow=kind == "flow")
            e = exponents(rows, vary_lr=kind == "gd")
            entry[kind] = {"rows": rows, "exponents": e,
                           "laws": law_fit(rows, e["ln_alpha"]["value"], e["ln_alpha"]["intercept"])}
        if "flow" in entry:
            entry["gd_vs_flow"] = gd_vs_flow(entry["gd"]["rows"], entry["flow"]["rows"])
        values["models"][name] = entry
    return Results(values, {}, {})  # every run's row is in values


def gd_vs_flow(gd: list[dict], flow: list[dict]) -> float:
    """The largest |t_GD / t_flow − 1| over the GD runs, each against the flow's run at the same (λ, α)."""
    by = {(r["wd"], r["alpha"]): r["time"] for r in flow}
    return float(np.max([abs(r["time"] / by[(r["wd"], r["alpha"])] - 1) for r in gd]))  # NaN stays NaN


def plot(results: Results, out: Path) -> list[Path]:
    plt = plots.pyplot()
    models = results.values["models"]
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(6 * (len(models) + 1), 4.3), squeeze=False)
    axes = axes[0]
    for ax, (name, entry) in zip(axes[:-1], models.items(), strict=True):
        for kind, marker in (("gd", "o"), ("flow", "x")):
            if kind not in entry:
                continue
            rows = entry[kind]["rows"]
            F = np.array([math.log(r["alpha"]) / r["wd"] for r in rows])
            t = np.array([r["time"] for r in rows])
            lrs = sorted({r["lr"] for r in rows})
            for i, lr in enumerate(lrs):
                sel = np.array([r["lr"] == lr for r in rows])
                ax.plot(F[sel], t[sel], marker, color=f"C{i}" if kind == "gd" else "k", ms=7,
                        label=f"GD, lr {lr:g}" if kind == "gd" else "flow")
        lim = np.array([min(F.min(), t.min()) / 1.5, max(F.max(), t.max()) * 1.5])
        ax.plot(lim, lim, "k:", lw=1, label="t = ln α / λ")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ln α / λ")
        ax.set_ylabel("switch time t = lr × step (50%)")
        e = entry["gd"]["exponents"]
        ax.set_title(f"{name}, GD: t ∝ lr^{e['lr']['value']:+.2f} λ^{e['wd']['value']:+.2f}; "
                     f"λt = {e['ln_alpha']['value']:.2f} ln α {e['ln_alpha']['intercept']:+.2f}", fontsize="medium")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize="small")
    ax = axes[-1]
    labels, y, lo, hi = [], [], [], []
    for name, entry in models.items():
        for kind in ("gd", "flow"):
            for param in ("lr", "wd", "ln_alpha"):
                e = entry.get(kind, {}).get("exponents", {}).get(param)
                if e is None:
                    continue
                ci = [math.nan if x is None else x for x in e["ci"]]
                labels.append(f"{name} {kind}: {param}")
                y.append(e["value"])
                lo.append(e["value"] - ci[0])
                hi.append(ci[1] - e["value"])
    pos = np.arange(len(y))
    ax.errorbar(y, pos, xerr=[lo, hi], fmt="o", capsize=3, label="measured, 95%")
    predicted = [_PREDICTED[lab.rsplit(": ", 1)[1]] for lab in labels]
    ax.plot(predicted, pos, "k|", ms=14, mew=2, label="t* = ln α / λ")
    ax.set_yticks(pos, labels, fontsize="small")
    ax.set_xlabel("exponent of lr, λ in t (steps: lr − 1); slope of λt in ln α")
    ax.set_title("measured, 95% intervals", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return plots.save(fig, out, TITLE, dpi=110)


_PREDICTED = {"lr": 0.0, "wd": -1.0, "ln_alpha": 1.0}
_WHAT = {"lr": "exponent of lr (time)", "wd": "exponent of λ", "ln_alpha": "slope of λ t in ln α"}


def _number(x) -> float:
    return math.nan if x is None else float(x)


def check(results: Results, config: dict) -> list[Check]:
    c = config["checks"]
    out = []
    for name, entry in results.values["models"].items():
        model = config["models"][name]
        for kind in ("gd", "flow"):
            if kind not in entry:
                continue
            e = entry[kind]["exponents"]
            for param, predicted in _PREDICTED.items():
                if param not in e:
                    continue
                tol = model["tolerances"][param]
                low, high = (_number(x) for x in e[param]["ci"])
                if tol is None:
                    out.append(Check.bound(f"{name}, {kind}: α delays the switch", "the lower end of the 95% "
                                           "interval of k (λ t = k ln α + c)", low, low=0.0))
                else:
                    out.append(Check.close(f"{name}, {kind}: {_WHAT[param]}", f"{predicted:g} (t* = ln α / λ); 95% "
                                           f"interval [{low:.3g}, {high:.3g}]", predicted, _number(e[param]["value"]),
                                           atol=tol))
            out.append(Check.bound(f"{name}, {kind}: power law in lr, λ", "R² of ln t (with one intercept per α)",
                                   _number(e["r2"]), low=c["r2_min"]))
            if model["laws"]:
                laws = entry[kind]["laws"]
                ratio, ln_alpha = _number(laws["norm_ratio"]["rms_log"]), _number(laws["ln_alpha"]["rms_log"])
                out.append(Check.holds(f"{name}, {kind}: log-norm-ratio law", "RMS of ln(t / C ln(‖θ_mem‖²/‖θ_post‖²)"
                                       "/λ) < that of ln(t / C ln α/λ)", ratio, ratio < ln_alpha,
                                       f"< {ln_alpha:.3g}"))
        if "gd_vs_flow" in entry:
            out.append(Check.bound(f"{name}: GD = flow", "largest |t_GD / t_flow − 1| at the same (λ, α), every lr",
                                   _number(entry["gd_vs_flow"]), high=c["flow_rtol"]))
    return out
