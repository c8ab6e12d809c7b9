"""Appendix E: how many samples the two limits of the diagonal net need on k-sparse +-1 data.

The max-L1-margin classifier (the late phase) generalizes from n = O(k^2 log d) samples (Theorem E.4); the
bound for the max-L2-margin classifier (the kernel phase) needs n = O(k d) (Theorem E.5). Both classifiers are
computed exactly (refimpl.limits.max_margin) for a grid of n at two dimensions d, and the n at which each
first reaches a test error below `target` is read off.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dichotomy import plots
from dichotomy.refimpl import blocks, data, losses
from dichotomy.refimpl.limits import max_margin
from dichotomy.run.progress import bar as progress_bar
from dichotomy.validation.claim import Check, Results

TITLE = "Sample complexity of the two limits: max-L1 vs max-L2 margin (Appendix E)"
CLAIM = ("On k-sparse ±1 data the max-L1-margin classifier generalizes from n ~ k² log d samples, while the "
         "max-L2-margin (kernel) classifier needs n ~ d (Theorems E.4, E.5; the L2 statement is an upper bound, "
         "docs/paper.md §6.6).")

# Tolerances (docs/validation.md#sample_complexity): at the larger d, L1 needs at least `gap_min` times fewer
# samples than L2; from d1 to d2 = 4 d1, L2's requirement grows by at least 2x (linear: 4x) and L1's by at
# most 2x (logarithmic: ln(2 d2)/ln(2 d1) ~ 1.2x).
_CHECKS = {"target": 0.1, "gap_min": 4.0, "l2_growth_min": 2.0, "l1_growth_max": 2.0}
# What the paper scale costs on a 2-core CPU (docs/validation-paper.md): `validate --paper` shows it first.
PAPER_COST = {"hours": None, "memory_gb": 0.5, "basis": "LP and QP solves up to n = 16384, d = 4000: not measured"}

CONFIGS = {
    "quick": {"dims": [250, 1000], "ns": [16, 32, 64, 128, 256, 512, 1024, 2048], "k": 3,
              "n_test": 2000, "seeds": [0, 1], "checks": _CHECKS},
    "paper": {"dims": [1000, 4000], "ns": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384], "k": 3,
              "n_test": 10000, "seeds": [0, 1, 2, 3], "checks": _CHECKS},
    "test": {"dims": [40, 160], "ns": [8, 16, 32, 64, 128, 256, 512], "k": 3, "n_test": 500, "seeds": [0],
             "checks": _CHECKS},
}


def _error(X, w, y) -> float:
    return 1.0 - losses.accuracy("binary", blocks.matvec(X, w), y)


def compute(config: dict, backend=None, progress: bool = False) -> Results:
    """Exact classifiers only: no training, so ``backend`` is not used."""
    dims, ns, seeds = config["dims"], config["ns"], config["seeds"]
    err = np.full((2, len(dims), len(ns), len(seeds)), np.nan)  # [L1/L2, d, n, seed]
    jobs = [(i, j, s) for i in range(len(dims)) for j in range(len(ns)) for s in range(len(seeds))]
    bar = progress_bar(len(jobs), show=progress, unit="fit", desc="max-margin classifiers")
    for i, j, s in jobs:
        ds = data.sparse_linear_classification(np.random.default_rng([seeds[s], dims[i], ns[j]]), d=dims[i],
                                               n_train=ns[j], n_test=config["n_test"], k=config["k"])
        err[0, i, j, s] = _error(ds.X_test, max_margin.max_l1_margin(ds.X_train, ds.y_train).w, ds.y_test)
        err[1, i, j, s] = _error(ds.X_test, max_margin.max_l2_margin(ds.X_train, ds.y_train).w, ds.y_test)
        bar.update(1)
    bar.close()
    mean = err.mean(axis=3)
    target = config["checks"]["target"]
    needed = {name: [_first(ns, mean[a, i], target) for i in range(len(dims))] for a, name in enumerate(("l1", "l2"))}
    return Results({"dims": dims, "ns": ns, "needed": needed, "target": target},
                   {"error": err, "mean_error": mean}, {})


def _first(ns, errors, target) -> float:
    hits = np.flatnonzero(errors <= target)
    return float(ns[hits[0]]) if hits.size else math.inf


def plot(results: Results, out: Path) -> list[Path]:
    plt = plots.pyplot()
    v, mean = results.values, results.arrays["mean_error"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, d in enumerate(v["dims"]):
        ax.plot(v["ns"], mean[0, i], "o-", color=f"C{i}", label=f"max-L1 margin, d = {d}")
        ax.plot(v["ns"], mean[1, i], "s--", color=f"C{i}", label=f"max-L2 margin (kernel), d = {d}")
    ax.axhline(v["target"], color="k", lw=0.8, ls=":", label=f"target {v['target']:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training samples n")
    ax.set_ylabel("test error")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return plots.save(fig, out, TITLE, dpi=120, fontsize="medium")


def check(results: Results, config: dict) -> list[Check]:
    v, c = results.values, config["checks"]
    inf = math.inf
    l1 = [x if x is not None else inf for x in v["needed"]["l1"]]
    l2 = [x if x is not None else inf for x in v["needed"]["l2"]]
    d1, d2 = v["dims"][0], v["dims"][-1]
    return [
        Check.bound("L1 generalizes", f"n for max-L1 test error <= {c['target']:g} at d = {d2}", l1[-1],
                    high=max(v["ns"])),
        Check.bound("L1 needs far fewer", f"n_L2 / n_L1 at d = {d2} (n_L2 = 2 × largest n if never reached)",
                    min(l2[-1], 2 * max(v["ns"])) / l1[-1], low=c["gap_min"]),
        Check.bound("L2 grows with d", f"n_L2(d = {d2}) / n_L2(d = {d1}) (linear: {d2 / d1:g})",
                    min(l2[-1], 2 * max(v["ns"])) / l2[0], low=c["l2_growth_min"]),
        Check.bound("L1 nearly flat in d", f"n_L1(d = {d2}) / n_L1(d = {d1}) (log: "
                    f"{math.log(2 * d2) / math.log(2 * d1):.2g})", l1[-1] / l1[0], high=c["l1_growth_max"]),
    ]
