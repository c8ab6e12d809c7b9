"""``dichotomy predict``: what a run will do, and when, before it is trained (docs/user-guide.md, "Predict").

The paper answers the two questions users of grokking code ask most (which weight decay, how long to train):
the run sits at the kernel predictor until about t* = ln α / λ (in time; t*/lr steps), then moves to the late
limit. :func:`predict` trains nothing. It solves the two limits of the preset's problem (refimpl.limits), reads
their train and test metrics, and classifies the switch the way ``dichotomy phase`` classifies a measured one
(``grokking`` if the late limit's test metric is better by at least ``MIN_CHANGE``, ``misgrokking`` if worse,
``no switch`` if they agree). It gives the steps a run needs to see the switch, and the λ that puts the switch
inside a step budget.

It is honest about its domain. The theory is asymptotic in α → ∞ and λ → 0, for the gradient flow. The
package's own runs put the measured 50% switch at :data:`RATIO_BAND` times t* (docs/validation.md: 0.74–0.90 for
the diagonal nets at quick scale, 0.53 for Fig. 1a, 1.52 for Fig. 3, 1.40–1.76 for fig3-quick's λ sweep).
Outside the domain the prediction says why in ``warnings``: α ≤ 1 or λ = 0 (no t*: the verdict is "outside the
domain"), α small (ln α < 2), lr × sharpness ≥ 2, a late limit with no convex form ("unknown"), or a run
(the preset's ``steps``) shorter than the band's end.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from dichotomy.errors import DichotomyError
from dichotomy.experiments import presets
from dichotomy.experiments.phase import MIN_CHANGE
from dichotomy.refimpl import losses
from dichotomy.refimpl.limits.predictors import kernel_limit, late_limit, predicted_time
from dichotomy.refimpl.sharpness import sharpness
from dichotomy.regime import EDGE
from dichotomy.store import files

RATIO_BAND = (0.5, 2.0)  # measured switch / t* of the package's runs: 0.53 (Fig. 1a) ... 1.76 (fig3-quick, λ 4e-3)
MARGIN = 1.5  # a run sees the switch, with its end, by MARGIN x the band's top x t*
SMALL_LN_ALPHA = 2.0  # below this ln(alpha) the kernel phase is short and its O(log log) corrections are not


@dataclass
class Prediction:
    """The prediction for one configuration: times, the two limits' metrics, the class, and its caveats."""

    preset: str
    model: str
    lr: float
    wd: float
    alpha: float
    t_star: float          # in time
    t_star_steps: float
    switch_steps: tuple    # RATIO_BAND x t*_steps
    steps_needed: float    # MARGIN x RATIO_BAND[1] x t*_steps
    metric: str
    kernel: dict           # {"name", "train", "test"} or {"name", "reason"}
    late: dict
    verdict: str           # "grokking", "misgrokking", "no switch", "unknown" or "outside the domain" (no t*)
    limits: str            # what the two limits alone say (the verdict, where t* exists)
    lr_sharpness: float | None
    budget: int | None = None
    wd_for_budget: float | None = None
    warnings: list = field(default_factory=list)
    run_steps: int | None = None  # the preset's own run length, which the band is compared with

    def summary(self) -> str:
        """One screen: t*, the limits' metrics, the verdict, the steps to train, the λ for a budget, the caveats."""
        m = self.metric
        run = f", a run of {self.run_steps:,} steps" if self.run_steps is not None else ""
        lines = [f"{self.preset}: {self.model}, lr {self.lr:g}, weight decay λ {self.wd:g}, α {self.alpha:g}{run}"]
        if math.isfinite(self.t_star):
            lines.append(f"  t* = ln α / λ = {self.t_star:.4g} in time, {self.t_star_steps:.4g} steps; the switch "
                         f"(50%) expected between {self.switch_steps[0]:.3g} and {self.switch_steps[1]:.3g} steps")
            lines.append(f"  train at least {self.steps_needed:.3g} steps to see it end")
        else:
            lines.append("  t*: none (see the warnings)")
        for p in (self.kernel, self.late):
            if "test" in p:
                lines.append(f"  {p['name']:22s} train {m} {p['train']:.4g}, test {m} {p['test']:.4g}")
            else:
                lines.append(f"  {p['name']:22s} not computed: {p['reason']}")
        what = {"grokking": "grokking: the late limit generalizes better (test " + m + " moves the right way)",
                "misgrokking": "misgrokking: the kernel predictor generalizes better, and the run will lose it",
                "no switch": f"no switch: the two limits' test {m} agree (within {MIN_CHANGE:g})",
                "unknown": "unknown: a limit is not computed",
                "outside the domain": f"outside the theory's domain (no t*); the limits alone say {self.limits}"
                }[self.verdict]
        lines.append(f"  verdict: {what}")
        if self.lr_sharpness is not None:
            lines.append(f"  lr x sharpness at the initialization: {self.lr_sharpness:.3g}")
        if self.budget is not None:
            lines.append(f"  for a budget of {self.budget:.3g} steps: λ = {self.wd_for_budget:.3g} puts the switch's "
                         "end inside it" if self.wd_for_budget else f"  for a budget of {self.budget:.3g} steps: no "
                         "λ (α ≤ 1)")
        lines += [f"  caveat: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return files.json_ready(asdict(self))


def _metrics(loss: str, f: np.ndarray, y: np.ndarray) -> float:
    task = losses.task_of(loss)
    return losses.accuracy(task, f, y) if task != "regression" else losses.value_and_grad(loss, f, y)[0]


def _limit(predictor, n_train: int, loss: str, data) -> dict:
    if predictor.outputs is None:
        return {"name": predictor.name, "reason": predictor.reason}
    f = predictor.outputs
    return {"name": predictor.name, "train": _metrics(loss, f[:n_train], data.y_train),
            "test": _metrics(loss, f[n_train:], data.y_test)}


def predict(preset: presets.Preset, name: str = "", *, budget: int | None = None) -> Prediction:
    """The :class:`Prediction` for ``preset`` (overridden as the caller likes); ``budget``: a step budget."""
    module, config, params0, data = presets.build(preset)
    t = predicted_time(module, config, preset.lr, preset.wd)
    probe = np.concatenate([data.X_train, data.X_test])  # both splits at once: each limit is solved once
    n = len(data.X_train)
    kernel = _limit(kernel_limit(module, config, params0, data, probe), n, data.loss, data)
    late = _limit(late_limit(module, config, data, probe), n, data.loss, data)
    task = losses.task_of(data.loss)
    metric = "loss" if task == "regression" else "accuracy"
    verdict = "unknown"
    if "test" in kernel and "test" in late:
        a, b = kernel["test"], late["test"]
        scale = 1.0 if metric == "accuracy" else max(abs(a), abs(b))
        better = b > a if metric == "accuracy" else b < a
        verdict = "no switch" if abs(b - a) < MIN_CHANGE * scale else "grokking" if better else "misgrokking"
    warnings = []
    limits = verdict
    if t["note"]:
        warnings.append(f"t* is {t['note']}")
        verdict = "outside the domain"
    elif math.log(t["alpha"]) < SMALL_LN_ALPHA:
        warnings.append(f"ln α = {math.log(t['alpha']):.2g} is small: the theory is for α -> ∞, and at this α the "
                        "switch may come well off t*")
    try:
        lr_sharpness = preset.lr * sharpness(module, config, params0, data.X_train, data.y_train, data.loss,
                                             preset.wd)
    except DichotomyError:
        lr_sharpness = None
    if lr_sharpness is not None and lr_sharpness >= EDGE:
        warnings.append(f"lr x sharpness = {lr_sharpness:.3g} at the initialization: GD's first steps are not the "
                        "gradient flow the theory describes (docs/math.md §7.4); a smaller lr or --flow follows it")
    if verdict == "unknown":
        warnings.append("a limit is not computed, so the class of the switch is unknown (its time still holds)")
    steps = t["steps"]
    band = tuple(r * steps for r in RATIO_BAND) if math.isfinite(steps) else (math.nan, math.nan)
    needed = MARGIN * RATIO_BAND[1] * steps if math.isfinite(steps) else math.nan
    if math.isfinite(steps) and preset.steps < band[1]:
        warnings.append(f"the run's {preset.steps:,} steps may end before the switch (expected by {band[1]:,.0f}): "
                        "a measured 'no switch', or 'mixed' over seeds, is then what to expect")
    wd_budget = None
    if budget is not None and t["alpha"] > 1:
        wd_budget = MARGIN * RATIO_BAND[1] * math.log(t["alpha"]) / (preset.lr * budget)
    return Prediction(name, module.NAME, preset.lr, preset.wd, t["alpha"], t["time"], steps, band, needed, metric,
                      kernel, late, verdict, limits, lr_sharpness, budget, wd_budget, warnings, preset.steps)
