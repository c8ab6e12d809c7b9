"""The kernel at large alpha: Grams and kernel predictors that do not overflow (issue 29, claim 4).

NTK closed forms taken at theta(0) = alpha theta_bar grow as alpha^(2(L-1)); in other libraries they overflow at a
large initialization (NaN in float32, ~1e18 reported in float64). The package's kernel predictors are solved in units
of alpha^(2(L-1)) (their Gram is taken at theta_bar, docs/limits.md §2), so their predictions must not move with
alpha at all; the raw Gram at theta(0) must be exact while it fits in float64 and a one-line error beyond. Measured
for every model: the diagonal net (L = 2, 3), matrix completion and the two-layer ReLU net, alpha from 1 to 1e300.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dichotomy import plots
from dichotomy.errors import ConfigError
from dichotomy.refimpl import data, diagonal_net, matrix_factorization, relu_mlp
from dichotomy.refimpl.limits import kernel_predictors, ntk
from dichotomy.validation.claim import Check, Results

TITLE = "The kernel at large α: no overflow, the same predictor at every scale (follow-up claim)"
CLAIM = ("NTK closed forms overflow at large initialization in other libraries (NaN in float32, ~1e18 in "
         "float64). Solved in units of α^(2(L−1)), the package's kernel predictors are the same at every α up to "
         "1e300 for every model, and the raw Gram at θ(0) is exact up to float64's range and refused in one line "
         "beyond (issue 29; docs/limits.md §2).")

# Tolerances (docs/validation.md#large_alpha): predictions at every alpha equal alpha = 1's to 1e-10 relative (the
# solves are the same up to rounding of theta(0)/alpha); the raw Gram / alpha^(2(L-1)) equals the unit Gram to 1e-10
# wherever it is finite, and is finite at least while alpha^(2(L-1)) <= 1e200 (alpha = 1e100 at L = 2, 1e50 at L = 3).
_CHECKS = {"rtol": 1e-10, "raw_exact_scale": 1e200}
ALPHAS = [1.0, 1e2, 1e4, 1e8, 1e16, 1e30, 1e60, 1e100, 1e150, 1e200, 1e250, 1e300]
# What the paper scale costs on a 2-core CPU: the same solves at larger sizes, seconds.
PAPER_COST = {"hours": 0.02, "memory_gb": 0.5, "basis": "12 kernel solves per model, the largest n = 200"}

CONFIGS = {
    "quick": {"alphas": ALPHAS, "problems": {"diagonal L=2": {"d": 400, "n": 60}, "diagonal L=3": {"d": 400, "n": 60},
                                             "completion": {"d": 20, "fraction": 0.3},
                                             "relu mlp": {"p": 11, "h": 32, "fraction": 0.5}},
              "checks": _CHECKS},
    "paper": {"alphas": ALPHAS, "problems": {"diagonal L=2": {"d": 2000, "n": 200},
                                             "diagonal L=3": {"d": 2000, "n": 200},
                                             "completion": {"d": 40, "fraction": 0.2},
                                             "relu mlp": {"p": 13, "h": 64, "fraction": 0.5}},
              "checks": _CHECKS},
    "test": {"alphas": [1.0, 1e8, 1e50, 1e100, 1e200, 1e300],
             "problems": {"diagonal L=2": {"d": 50, "n": 20}, "diagonal L=3": {"d": 50, "n": 20},
                          "completion": {"d": 10, "fraction": 0.3}, "relu mlp": {"p": 7, "h": 8, "fraction": 0.5}},
             "checks": _CHECKS},
}


def _problem(name: str, size: dict):
    """(module, dataset, depth L, config at alpha) for one of the config's problems."""
    rng = np.random.default_rng(0)
    if name == "completion":
        ds = data.multiplication_table(rng, d=size["d"], train_fraction=size["fraction"])
        return matrix_factorization, ds, 2, lambda a: matrix_factorization.Config(d=size["d"], alpha=a)
    if name == "relu mlp":
        ds = data.modular_arithmetic(rng, p=size["p"], train_fraction=size["fraction"])
        return relu_mlp, ds, 2, lambda a: relu_mlp.config_for(ds, h=size["h"], init_scale=a)
    L = int(name.split("L=")[1])
    ds = data.sparse_linear_classification(rng, d=size["d"], n_train=size["n"], n_test=2 * size["n"], k=3)
    return diagonal_net, ds, L, lambda a: diagonal_net.Config(d=size["d"], alpha=a, L=L)


def _init(module, config):
    """theta(0) at ``config``'s alpha, from one seed, so every alpha scales the same theta_bar."""
    return module.init(config, np.random.default_rng(0))


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny))


def compute(config: dict, backend=None, progress: bool = False) -> Results:
    """Closed forms only: no training, so ``backend`` is not used."""
    alphas = config["alphas"]
    if not alphas or alphas[0] != 1.0 or sorted(alphas) != list(alphas):
        raise ConfigError(f"large_alpha: 'alphas' must start at 1 (the reference) and increase, got {alphas}")
    names = list(config["problems"])
    pred_dev = np.full((len(names), len(alphas)), np.nan)   # max |f_ker(alpha) - f_ker(1)| / max |f_ker(1)|
    gram_dev = np.full((len(names), len(alphas)), np.nan)   # raw Gram / alpha^(2(L-1)) against the unit Gram
    refused = np.zeros((len(names), len(alphas)), bool)      # the raw Gram refused in one line
    leaked = np.zeros((len(names), len(alphas)), bool)       # an inf or NaN came out anywhere (never expected)
    messages, depths = {}, []
    for i, name in enumerate(names):
        module, ds, L, config_of = _problem(name, config["problems"][name])
        depths.append(L)
        X = ds.X_train
        unit_c = config_of(1.0)
        unit_gram = ntk.gram(module, unit_c, ntk.unit_init(module, unit_c, _init(module, unit_c)), X)
        reference = None
        for j, alpha in enumerate(alphas):
            c = config_of(alpha)
            params = _init(module, c)
            with np.errstate(over="ignore", invalid="ignore"):
                kp = kernel_predictors.kernel_predictor(module, c, params, X, ds.y_train, ds.loss)
                f = kp.predict(module, c, ds.X_test)
            leaked[i, j] |= not np.all(np.isfinite(f))
            reference = f if reference is None else reference
            pred_dev[i, j] = _relative(f, reference)
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    raw = ntk.gram(module, c, params, X) / alpha ** (L - 1) / alpha ** (L - 1)  # alpha^2 may overflow
            except ConfigError as e:
                refused[i, j] = True
                messages.setdefault(name, str(e))
                continue
            leaked[i, j] |= not np.all(np.isfinite(raw))
            gram_dev[i, j] = _relative(raw, unit_gram)
    values = {"alphas": alphas, "problems": names, "depths": depths, "refusal": messages,
              "largest_exact_raw": {n: max((a for a, r, g in zip(alphas, refused[i], gram_dev[i], strict=True)
                                            if not r and np.isfinite(g)), default=math.nan)
                                    for i, n in enumerate(names)}}
    return Results(values, {"prediction_deviation": pred_dev, "raw_gram_deviation": gram_dev,
                            "refused": refused, "leaked": leaked}, {})


def plot(results: Results, out: Path) -> list[Path]:
    plt = plots.pyplot()
    v, a = results.values, results.arrays
    x = np.log10(np.array(v["alphas"], dtype=np.float64))  # a log axis to 1e300 overflows matplotlib's margins
    floor = 1e-18  # an exact zero drawn on the log axis
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for i, name in enumerate(v["problems"]):
        left.plot(x, np.maximum(a["prediction_deviation"][i], floor), "o-", label=name)
        ok = np.isfinite(a["raw_gram_deviation"][i])
        right.plot(x[ok], np.maximum(a["raw_gram_deviation"][i][ok], floor), "o-", color=f"C{i}", label=name)
        right.plot(x[a["refused"][i]], np.full(int(a["refused"][i].sum()), 1e-2), "x", color=f"C{i}")
    right.axvline(154, color="k", ls=":", lw=1, label="α² leaves float64 (≈1e154)")
    right.text(160, 3e-3, "× refused in one line", fontsize="small")
    left.set_title("kernel predictor: max |f(α) − f(1)| / max |f(1)|")
    right.set_title("raw Gram at θ(0): |K/α^(2(L−1)) − K(θ̄)| / max|K(θ̄)|")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, 1)
        ax.set_xlabel("log₁₀ α (init scale)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    left.set_ylabel(f"relative deviation (exact 0 drawn at {floor:g})")
    return plots.save(fig, out, TITLE, dpi=120)


def check(results: Results, config: dict) -> list[Check]:
    v, a, c = results.values, results.arrays, config["checks"]
    out = []
    for i, name in enumerate(v["problems"]):
        worst = float(np.max(a["prediction_deviation"][i]))
        out.append(Check.bound(f"{name}: same predictor", f"max over α ≤ {max(v['alphas']):.0e} of the kernel "
                               "predictor's relative change", worst, high=c["rtol"]))
        dev, refused = a["raw_gram_deviation"][i], a["refused"][i]
        finite = dev[np.isfinite(dev)]
        out.append(Check.holds(f"{name}: raw Gram exact or refused",
                               "raw Gram / α^(2(L−1)) = unit Gram where finite; a one-line error elsewhere; no inf "
                               "or NaN; exact at α = 1", float(np.max(finite)) if finite.size else math.nan,
                               bool(np.all(finite <= c["rtol"]) and not a["leaked"][i].any() and not refused[0]
                                    and np.all(np.isfinite(dev) | refused)), f"<= {c['rtol']:g}, never inf"))
        L = v["depths"][i]
        reach = v["largest_exact_raw"][name]
        out.append(Check.bound(f"{name}: raw Gram range", f"largest α with an exact raw Gram (α^{2 * (L - 1)} ≤ "
                               f"{c['raw_exact_scale']:.0e} must be)", math.nan if reach is None else reach,
                               low=c["raw_exact_scale"] ** (1 / (2 * (L - 1)))))
    return out
