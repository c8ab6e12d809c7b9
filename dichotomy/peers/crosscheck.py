"""Cross-check another framework's implementation against the exact reference (docs/crosscheck.md).

Give :func:`crosscheck` any of three functions written in any framework, each taking and returning NumPy
(a dict of parameter arrays named as in this package):

- ``forward(params, X) -> f``;
- ``loss_and_grad(params, X, y) -> (loss, grads)``;
- ``step(params) -> params``: one training step of your loop (your optimizer, lr, weight decay).

It compares each with the float64 reference, per quantity and, for ``step``, per step over a k-step
trajectory. When something disagrees it replays the reference under the usual alternative conventions
(:data:`CONVENTIONS`: decoupled decay, a penalty without the 1/2, summed loss, 1/2 in the MSE, float32) and
names the one that explains the difference. :func:`golden` and :func:`write_golden` export small reference
trajectories for frameworks that cannot import this package.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import checks, models
from dichotomy.refimpl import data as datasets
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.steppers import sgd_step
from dichotomy.run.trajectory import versions
from dichotomy.store import files

# name -> what it means, as a user would have written it
CONVENTIONS = {
    "reference": "p <- p - lr (grad + wd p) on the mean loss, float64 (torch.optim.SGD(lr, weight_decay=wd))",
    "decoupled": "decay not scaled by lr: p <- (1 - wd) p - lr grad",
    "penalty-without-half": "penalty wd ||theta||^2 in the loss (no 1/2): p <- p - lr (grad + 2 wd p)",
    "no-decay": "weight decay left out: p <- p - lr grad",
    "sum": "loss summed over samples instead of averaged: grad x n",
    "half-mse": "1/2 (f - y)^2 instead of nn.MSELoss's (f - y)^2: grad x 1/2",
    "float32": "float32 arithmetic (float32 tensors or data)",
}
MATCH_RTOL = 1e-8       # an alternative "explains" a run when the run follows it this closely ...
MATCH_FACTOR = 100.0    # ... and this many times more closely than the stated convention


@dataclass(frozen=True)
class Comparison:
    """One quantity: relative error at each step (one entry for a single evaluation) against ``rtol``."""

    name: str
    errors: np.ndarray
    rtol: float

    @property
    def max_error(self) -> float:
        return float(np.max(self.errors)) if self.errors.size else 0.0

    @property
    def first_bad(self) -> int | None:
        bad = np.flatnonzero(~(self.errors <= self.rtol))
        return int(bad[0]) if bad.size else None

    @property
    def passed(self) -> bool:
        return self.first_bad is None


@dataclass
class Report:
    """Every comparison, whether all agree, and the convention that explains a disagreement (if one does)."""

    model: str
    framework: str
    comparisons: list[Comparison]
    diagnosis: str | None = None
    alternatives: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    def table(self) -> str:
        lines = [f"{self.framework} vs reference, {self.model}:",
                 f"  {'quantity':26s} {'max rel err':>12s} {'rtol':>8s}  first step over  verdict"]
        for c in self.comparisons:
            first = "-" if c.first_bad is None else str(c.first_bad)
            lines.append(f"  {c.name:26s} {c.max_error:12.3e} {c.rtol:8.0e}  {first:>15s}  "
                         f"{'ok' if c.passed else 'DIFFERS'}")
        if not self.passed:
            lines.append(f"  diagnosis: {self.diagnosis or 'no usual convention explains the difference'}")
            if self.alternatives:
                tried = ", ".join(f"{k} {v:.1e}" for k, v in sorted(self.alternatives.items(), key=lambda kv: kv[1]))
                lines.append(f"  error against each alternative: {tried}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"model": self.model, "framework": self.framework, "passed": self.passed,
                "diagnosis": self.diagnosis, "alternatives": self.alternatives,
                "comparisons": [{"name": c.name, "max_error": c.max_error, "rtol": c.rtol,
                                 "first_bad": c.first_bad, "errors": c.errors.tolist()} for c in self.comparisons]}


def relative_error(got, want) -> float:
    """||got - want|| / ||want|| over all entries (dicts: over all arrays); inf on a shape mismatch or NaN."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return math.inf
        num = sum(float(np.sum((np.asarray(got[k], np.float64) - want[k]) ** 2)) for k in want
                  if np.shape(got[k]) == np.shape(want[k]))
        if any(np.shape(got[k]) != np.shape(want[k]) for k in want):
            return math.inf
        den = sum(float(np.sum(np.asarray(want[k], np.float64) ** 2)) for k in want)
    else:
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if got.shape != want.shape:
            return math.inf
        num, den = float(np.sum((got - want) ** 2)), float(np.sum(want**2))
    err = math.sqrt(num) / max(math.sqrt(den), np.finfo(float).tiny)
    return err if math.isfinite(err) else math.inf


def reference_step(model: ModuleType, config, params, X, y, loss: str, lr: float, wd: float,
                   convention: str = "reference") -> dict[str, np.ndarray]:
    """One GD step of the reference under ``convention`` (a key of :data:`CONVENTIONS`)."""
    if convention not in CONVENTIONS:
        raise errors.ConfigError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if convention == "float32":
        params = {k: v.astype(np.float32) for k, v in params.items()}
        X = X.astype(np.float32) if X.dtype.kind == "f" or model.INPUTS != "index-pairs" else X
        lr, wd = np.float32(lr), np.float32(wd)
    _, g = model.loss_and_grad(config, params, X, y, loss)
    scale = {"sum": X.shape[0], "half-mse": 0.5}.get(convention, 1.0)
    if convention == "decoupled":
        return {k: (1 - wd) * p - lr * g[k] for k, p in params.items()}
    decay = {"penalty-without-half": 2 * wd, "no-decay": 0.0}.get(convention, wd)
    out = sgd_step(params, {k: scale * v for k, v in g.items()}, lr, decay)
    return {k: v.astype(params[k].dtype, copy=False) for k, v in out.items()}


def reference_trajectory(model, config, params, data: Dataset, lr, wd, steps, convention="reference"):
    """Parameters after 0..steps reference steps under ``convention``: a list of steps + 1 dicts."""
    out = [{k: np.array(v, dtype=np.float64) for k, v in params.items()}]
    for _ in range(steps):
        out.append(reference_step(model, config, out[-1], data.X_train, data.y_train, data.loss, lr, wd, convention))
    return out


def crosscheck(model: ModuleType | str, config, params: dict[str, np.ndarray], data: Dataset, *, lr: float,
               wd: float, steps: int = 100, forward=None, loss_and_grad=None, step=None, rtol: float = 1e-10,
               framework: str = "user") -> Report:
    """Compare a framework's functions with the reference on ``data``'s training set (see the module doc).

    Parameters
    ----------
    model, config, params : the model (module or name), its Config and the initial parameters (dict of
        float64 arrays with this package's names and shapes).
    data : Dataset whose ``X_train``, ``y_train`` and ``loss`` the user's functions were built with.
    lr, wd : the step's learning rate and coupled weight decay (the convention being checked).
    steps : length of the trajectory compared when ``step`` is given.
    forward, loss_and_grad, step : the user's functions (NumPy in, NumPy out); at least one.
    rtol : tolerance on every relative error (1e-10: float64 implementations agree to ~1e-13).
    """
    model = models.get(model) if isinstance(model, str) else model
    if forward is None and loss_and_grad is None and step is None:
        raise errors.ConfigError("give at least one of forward, loss_and_grad, step to compare")
    steps = checks.step_count("steps", steps, minimum=1)
    X, y, loss = data.X_train, data.y_train, data.loss
    comparisons, float32_seen, tried = [], False, {}
    if forward is not None:
        f = forward(params, X)
        float32_seen |= np.asarray(f).dtype == np.float32
        error = relative_error(f, model.predict(config, params, X))
        comparisons.append(Comparison("forward f(theta; X)", np.array([error]), rtol))
    if loss_and_grad is not None:
        value, grads = loss_and_grad(params, X, y)
        float32_seen |= any(np.asarray(g).dtype == np.float32 for g in grads.values())
        want_value, want_grads = model.loss_and_grad(config, params, X, y, loss)
        comparisons.append(Comparison("loss", np.array([relative_error(value, want_value)]), rtol))
        comparisons.append(Comparison("gradient", np.array([relative_error(grads, want_grads)]), rtol))
        tried = _gradient_alternatives(value, grads, want_value, want_grads, X.shape[0], loss)
    if step is not None:
        trajectory = [{k: np.array(v) for k, v in params.items()}]
        for _ in range(steps):
            after = step({k: v.copy() for k, v in trajectory[-1].items()})
            trajectory.append({k: np.asarray(v) for k, v in after.items()})
        float32_seen |= any(v.dtype == np.float32 for v in trajectory[-1].values())
        want = reference_trajectory(model, config, params, data, lr, wd, steps)
        comparisons.append(Comparison(f"parameters, steps 0..{steps}",
                                      np.array([relative_error(g, w) for g, w in zip(trajectory, want, strict=True)]),
                                      rtol))
    report = Report(model.NAME, framework, comparisons)
    if not report.passed:
        if step is not None:  # the trajectory tells the update conventions apart; it takes precedence
            tried = _trajectory_alternatives(model, config, params, data, lr, wd, trajectory, want)
        report.diagnosis, report.alternatives = _explain(tried, float32_seen), tried
    return report


def _trajectory_alternatives(model, config, params, data, lr, wd, trajectory, reference) -> dict[str, float]:
    """Largest error between the run and the reference replayed under each alternative convention.

    The error is taken over the first 20 steps: enough to separate the conventions, and cheap for big models.
    """
    short = min(len(trajectory) - 1, 20)
    tried = {}
    for name in CONVENTIONS:
        if name == "float32" or (name == "half-mse" and data.loss != "squared"):
            continue
        want = (reference if name == "reference" else
                reference_trajectory(model, config, params, data, lr, wd, short, name))
        tried[name] = max(relative_error(g, w) for g, w in zip(trajectory[: short + 1], want[: short + 1],
                                                               strict=True))
    return tried


def _gradient_alternatives(value, grads, want_value, want_grads, n, loss) -> dict[str, float]:
    """Error of the loss and gradient against the reference's scaled as each alternative would scale it."""
    tried = {}
    for name, scale in (("sum", n), ("half-mse", 0.5), ("reference", 1.0)):
        if name == "half-mse" and loss != "squared":
            continue
        tried[name] = max(relative_error(value, scale * want_value),
                          relative_error(grads, {k: scale * v for k, v in want_grads.items()}))
    return tried


def _explain(tried: dict[str, float], float32_seen: bool) -> str | None:
    """The convention that explains the disagreement, or None when none does."""
    if float32_seen:
        return CONVENTIONS["float32"] + " (the framework returned float32 arrays)"
    if tried:
        best = min(tried, key=tried.get)
        if best != "reference" and tried[best] <= MATCH_RTOL and tried[best] * MATCH_FACTOR <= tried["reference"]:
            return f"{best}: {CONVENTIONS[best]}"
        if 1e-9 < tried.get("reference", 0) < 1e-4:
            return CONVENTIONS["float32"] + " (errors at single-precision level)"
    return None


# --- small standard problems and golden trajectories -----------------------------------------------------

# Every model's small standard problem, by name: the models' own SMALL_PROBLEM facts.
PROBLEMS = {name: module.SMALL_PROBLEM for name, module in models.MODELS.items()}


def problem(model: str, seed: int = 0):
    """The model's small standard problem (its ``SMALL_PROBLEM``): (module, config, params, dataset, lr, wd).

    One generator draws the dataset and then the initial parameters, so a seed fixes both."""
    module = models.get(model)
    spec, rng = module.SMALL_PROBLEM, np.random.default_rng(seed)
    ds = datasets.GENERATORS[spec["dataset"]](rng, **spec["data"])
    config = module.config_for(ds, **spec["model"])
    return module, config, module.init(config, rng), ds, spec["lr"], spec["wd"]


def golden(model: str, steps: int = 20, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """A reference trajectory of :func:`problem` (model): arrays and a JSON description.

    The arrays are the data, the params at every step and the loss at every step; the description holds the config,
    update rule, shapes and versions.
    """
    module, config, params, ds, lr, wd = problem(model, seed)
    traj = reference_trajectory(module, config, params, ds, lr, wd, steps)
    arrays = {"X_train": ds.X_train, "y_train": ds.y_train,
              "loss": np.array([module.loss_and_grad(config, p, ds.X_train, ds.y_train, ds.loss)[0] for p in traj])}
    arrays.update({f"params/{k}": np.stack([p[k] for p in traj]) for k in params})
    doc = {"model": model, "model_config": vars(config), "loss": ds.loss, "reduction": "mean", "lr": lr, "wd": wd,
           "steps": steps, "seed": seed, "update": CONVENTIONS["reference"],
           "params": {k: list(v.shape) for k, v in params.items()},
           "arrays": {"params/NAME": "(steps + 1, *shape): parameters after 0..steps updates",
                      "loss": "(steps + 1,): mean training loss at those parameters (no weight-decay term)",
                      "X_train": "training inputs", "y_train": "training targets"},
           "versions": versions()}
    return arrays, doc


def write_golden(folder: Path, model: str, steps: int = 20, seed: int = 0) -> tuple[Path, Path]:
    """Write ``folder/<model>.npz`` and ``folder/<model>.json`` (readable without this package)."""
    arrays, doc = golden(model, steps, seed)
    return files.save_npz(folder / f"{model}.npz", arrays), files.write_json(folder / f"{model}.json", doc)


def read_golden(stem: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and description written by :func:`write_golden` (``stem`` without suffix)."""
    stem = Path(stem).with_suffix("")
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(stem.with_suffix(".json").read_text())
