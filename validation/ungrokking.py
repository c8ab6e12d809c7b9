"""Ungrokking: a net that grokked, trained on with the same λ on too small a subset, forgets (issue 29, claim 3).

Varma, Shah, Kenton, Kramár, Kumar (arXiv 2309.02390): below a critical training-set size the memorizing solution is
the more efficient one (smaller norm for the same margin), so weight decay moves a grokked net back to it and its
test accuracy falls. Configuration only: stage 1 trains the two-layer ReLU net on a large fraction of the addition
table until it has grokked; stage 2 continues from its final parameters, with the same lr and λ, on a random subset of
stage 1's training pairs. Test accuracy is on stage 1's held-out pairs throughout (never trained on in either stage).
Controls: stage 2 on the whole stage-1 training set (nothing should change) and on the smallest subset with λ = 0
(no pull toward the efficient solution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dichotomy import plots
from dichotomy.errors import ConfigError
from dichotomy.experiments import runs
from dichotomy.refimpl.data import Dataset
from dichotomy.validation.claim import Check, Results

TITLE = "Ungrokking: continued training on a small subset undoes grokking (follow-up claim)"
CLAIM = ("A net that grokked modular addition at a large training fraction, trained on with the same weight decay on "
         "a subset below the critical size, loses its test accuracy while it still fits its (smaller) training set "
         "(Varma et al. 2023, 'ungrokking'); on the whole set nothing changes.")

# Tolerances (docs/validation.md#ungrokking): stage 1 groks (test >= grok_min); on the smallest subset stage 2 ends
# with test accuracy <= ungrok_max while fitting its training pairs; the full-set control keeps test accuracy within
# keep_atol of stage 1's; with lambda the fall is faster than with lambda = 0 (measured by the half-life: the first
# step with test accuracy below half of stage 1's).
_CHECKS = {"grok_min": 0.6, "ungrok_max": 0.2, "keep_atol": 0.1}


def _config(p, h, fraction, subsets, lr, wd, steps1, steps2):
    return {"run": {"preset": "fig2a-quick", "overrides": {"p": p, "h": h, "train_fraction": fraction, "lr": lr,
                                                            "wd": wd, "steps": steps1}},
            "subsets": subsets, "steps2": steps2, "subset_seed": 1, "checks": _CHECKS}


PAPER_COST = {"hours": 0.05, "memory_gb": 0.2, "basis": "p = 31: 1 + 4 runs of 3e4-6e4 steps x ~0.5 ms"}

CONFIGS = {
    "quick": _config(17, 128, 0.9, [0.3, 0.5], 0.5, 1e-3, 10_000, 20_000),
    "paper": _config(31, 128, 0.7, [0.2, 0.3, 0.5], 0.5, 1e-3, 30_000, 60_000),
    "test": _config(17, 128, 0.9, [0.3], 0.5, 1e-3, 10_000, 3_000),
}


def _stage2(stage1: runs.Run, backend, X, y, wd: float, steps: int, progress: bool, label: str):
    ds = stage1.data
    data = Dataset(X, y, ds.X_test, ds.y_test, ds.loss, {**ds.info, "stage2_pairs": int(len(X))})
    return backend.run(stage1.module, stage1.config, stage1.traj.params, data, lr=stage1.preset.lr, wd=wd,
                       steps=steps, record=runs.schedule(steps), probe=stage1.probe, progress=progress, label=label)


def compute(config: dict, backend, progress: bool = False) -> Results:
    fraction = config["run"]["overrides"]["train_fraction"]
    if not config["subsets"] or not all(0 < f < fraction for f in config["subsets"]):
        raise ConfigError(f"ungrokking: 'subsets' must be fractions of the p² pairs below stage 1's {fraction:g}, got "
                          f"{config['subsets']}")
    first = runs.train(config["run"], backend, progress=progress, label="stage 1")
    ds, p = first.data, config["run"]["overrides"]["p"]
    wd, steps2 = first.preset.wd, config["steps2"]
    order = np.random.default_rng(config["subset_seed"]).permutation(len(ds.X_train))
    trajs = {"stage1": first.traj}
    kept = {f: np.sort(order[:int(round(f * p * p))]) for f in config["subsets"]}  # subsets of stage 1's pairs
    for f, keep in kept.items():
        trajs[f"subset_{f:g}"] = _stage2(first, backend, ds.X_train[keep], ds.y_train[keep], wd, steps2, progress,
                                         f"stage 2, {f:.0%} of pairs")
    smallest = min(config["subsets"])
    keep = kept[smallest]
    trajs["no_wd"] = _stage2(first, backend, ds.X_train[keep], ds.y_train[keep], 0.0, steps2, progress,
                             f"stage 2, {smallest:.0%}, λ = 0")
    trajs["full"] = _stage2(first, backend, ds.X_train, ds.y_train, wd, steps2, progress, "stage 2, all stage-1 pairs")
    end = {k: {"test": float(t.metrics["test_acc"][-1]), "train": float(t.metrics["train_acc"][-1]),
               "min_train_after": float(np.min(t.metrics["train_acc"][t.steps >= t.steps[-1] / 2]))}
           for k, t in trajs.items()}
    values = {"p": p, "lr": first.preset.lr, "wd": wd, "fraction": config["run"]["overrides"]["train_fraction"],
              "subsets": config["subsets"], "end": end,
              "half_life": {k: _half_life(t, end["stage1"]["test"]) for k, t in trajs.items() if k != "stage1"}}
    return Results(values, {}, trajs)


def _half_life(traj, start: float) -> float | None:
    """The first recorded step of stage 2 at which test accuracy is below half of stage 1's final; None if never."""
    hits = np.flatnonzero(traj.metrics["test_acc"] < start / 2)
    return float(traj.steps[hits[0]]) if hits.size else None


def plot(results: Results, out: Path) -> list[Path]:
    plt = plots.pyplot()
    v, t = results.values, results.trajectories
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    s1 = t["stage1"]
    left.plot(s1.steps, 100 * s1.metrics["test_acc"], color="C0", label="test (held-out pairs)")
    left.plot(s1.steps, 100 * s1.metrics["train_acc"], color="C0", ls=":", label="train")
    left.set_title(f"stage 1: {v['fraction']:.0%} of the p² pairs (p = {v['p']})")
    labels = {f"subset_{f:g}": f"{f:.0%} of pairs, λ = {v['wd']:g}" for f in v["subsets"]}
    labels.update({"no_wd": f"{min(v['subsets']):.0%} of pairs, λ = 0",
                   "full": f"all stage-1 pairs ({v['fraction']:.0%}), λ = {v['wd']:g}"})
    for i, (key, label) in enumerate(labels.items()):
        right.plot(t[key].steps, 100 * t[key].metrics["test_acc"], color=f"C{i + 1}", label=f"{label}: test")
        right.plot(t[key].steps, 100 * t[key].metrics["train_acc"], color=f"C{i + 1}", ls=":", lw=1)
    right.set_title("stage 2 from stage 1's end, same lr (train dotted)")
    for ax in (left, right):
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    left.set_ylabel("accuracy (%)")
    return plots.save(fig, out, TITLE, dpi=120)


def check(results: Results, config: dict) -> list[Check]:
    v, c = results.values, config["checks"]
    end, half, smallest = v["end"], v["half_life"], f"subset_{min(v['subsets']):g}"
    return [
        Check.bound("stage 1 groks", "stage 1's final test accuracy", end["stage1"]["test"], low=c["grok_min"]),
        Check.bound("ungrokking", f"final test accuracy after stage 2 on {min(v['subsets']):.0%} of the pairs",
                    end[smallest]["test"], high=c["ungrok_max"]),
        Check.bound("still fits", f"train accuracy over stage 2's second half, {min(v['subsets']):.0%} subset",
                    end[smallest]["min_train_after"], low=1.0),
        Check.close("full-set control", "test accuracy after stage 2 on all stage-1 pairs = stage 1's",
                    end["stage1"]["test"], end["full"]["test"], atol=c["keep_atol"]),
        Check.holds("weight decay drives it", f"half-life of test accuracy on the {min(v['subsets']):.0%} subset: "
                    "with λ < with λ = 0", _steps_or_inf(half[smallest]),
                    half[smallest] is not None and (half["no_wd"] is None or half[smallest] < half["no_wd"]),
                    f"< {_steps_or_inf(half['no_wd']):g} steps (λ = 0; never = inf)"),
    ]


def _steps_or_inf(x) -> float:
    return float("inf") if x is None else float(x)
