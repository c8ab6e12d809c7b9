"""How far is my GD from the flow? GD and the gradient flow from one initialization, compared as they go.

:func:`gd_vs_flow` advances a GD engine and a flow engine of the same backend side by side, from the same
parameters, and at every recorded step s compares theta_GD(s) with theta_flow(lr s):

    distance(s) = ||theta_GD(s) - theta_flow(lr s)||_2 / ||theta_flow(lr s)||_2,

next to each run's metrics. GD is the flow's explicit Euler method: while lr x sharpness stays well below 2 the
distance is O(lr) (halving lr halves it); above 2, GD leaves the flow (docs/math.md §7). ``dichotomy gd-flow``
prints and saves it. :func:`timed_flow` and :func:`flow_table` are ``dichotomy bench --flow``'s rows: the flow's
wall and gradients per unit of time beside GD's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import checks, models
from dichotomy.refimpl.engine import ReferenceEngine, RunSpec
from dichotomy.refimpl.flow_engine import PIECE
from dichotomy.refimpl.params import flatten
from dichotomy.refimpl.steppers import Flow
from dichotomy.run import driver
from dichotomy.run.progress import bar as progress_bar
from dichotomy.store import files

METRICS = ("train_loss", "test_loss", "train_acc", "test_acc", "param_norm")
FLOW_STEPS = 10_000  # dichotomy bench --flow integrates to the time GD reaches in this many steps


@dataclass
class GdFlow:
    """GD beside the flow: per recorded step, the relative parameter distance and both runs' metrics."""

    steps: np.ndarray
    time: np.ndarray
    distance: np.ndarray
    gd: dict[str, np.ndarray]
    flow: dict[str, np.ndarray]
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines: the largest distance and where, the last one, what the flow cost."""
        if not len(self.steps):
            return "nothing recorded"
        i = int(np.nanargmax(self.distance)) if np.any(np.isfinite(self.distance)) else 0
        s = self.settings
        lines = [f"||theta_GD(s) - theta_flow(lr s)|| / ||theta_flow||, GD at lr {s['lr']:g} beside the flow "
                 f"(rtol {s['rtol']:g}):",
                 f"  largest {self.distance[i]:.3g} at step {self.steps[i]} (t = {self.time[i]:.4g})",
                 f"  at the end {self.distance[-1]:.3g} (step {self.steps[-1]}, t = {self.time[-1]:.4g})"]
        for k in ("test_loss", "test_acc"):
            if k in self.gd:
                lines.append(f"  {k}: GD {self.gd[k][-1]:.6g}, flow {self.flow[k][-1]:.6g} at the end")
        i = s.get("integrator", {})
        lines.append(f"  the flow took {i.get('grad_evals')} gradients; GD took {self.steps[-1]} steps")
        if "stopped" in s:
            lines.append(f"  stopped early: {s['stopped']}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return files.json_ready({"settings": self.settings, "steps": self.steps, "time": self.time,
                                 "distance": self.distance, "gd": self.gd, "flow": self.flow})


def gd_vs_flow(model, config, params: dict, data, *, lr: float, wd: float, steps: int, record=None,
               engine=ReferenceEngine, rtol: float = 1e-6, metrics: bool = True, progress: bool = False,
               label: str = "") -> GdFlow:
    """GD at ``lr`` and the flow from ``params``, compared at the ``record`` steps (default: the driver's).

    ``engine`` is a GD engine class (``get_backend(name).engine``); the flow is its backend's flow engine.
    ``metrics=False`` records the distance alone (each engine's metrics read the test set: on Fig. 1a's 1 GB one,
    most of the cost). A GD run that diverges ends the comparison at its last finite step (said in ``settings``).
    """
    model = models.resolve(model)
    checks.check_config(model, config)
    params, lr, wd, steps, record, _ = driver.check_run(model, config, params, data, lr, wd, steps, record)
    stepper = Flow(rtol=rtol)
    runs = [RunSpec(config, params, lr, wd)]
    name = getattr(engine, "name", type(engine).__name__)
    if not hasattr(engine, "flow_engine"):
        raise errors.ConfigError(f"the {name} backend has no gradient-flow engine; use numpy or numba")
    flow_class = engine.flow_engine()
    for e, sched in ((engine, None), (flow_class, stepper)):
        reason = e.unsupported(model, runs, data, "float64", sched) if hasattr(e, "unsupported") else None
        if reason is not None:
            raise errors.ConfigError(f"the {name} backend cannot compare GD with the flow here: {reason}")
    gd, fl = engine(model, runs, data), flow_class(model, runs, data, schedule=stepper)
    rows, dist, done = {"gd": [], "flow": []}, [], []
    bar = progress_bar(len(record), show=progress, unit="record", desc=label or "GD beside the flow")
    note = None
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            for s in record:
                if s > gd.step:
                    gd.advance(int(s - gd.step))
                while fl.step < s and fl.diverged_at[0] < 0:
                    fl.advance_toward(s, PIECE)
                if gd.diverged_at[0] >= 0 or fl.diverged_at[0] >= 0:
                    note = (f"GD diverged at step {gd.diverged_at[0]}" if gd.diverged_at[0] >= 0 else
                            f"the flow stopped: {fl.failure[0]}")
                    break
                a, b = flatten(gd.params()[0]), flatten(fl.params()[0])
                dist.append(float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(float).tiny)))
                if metrics:
                    rows["gd"].append(gd.metrics()[0])
                    rows["flow"].append(fl.metrics()[0])
                done.append(int(s))
                bar.update(1)
    finally:
        bar.close()
    kept = np.array(done, np.int64)
    tables = {k: {m: np.array([r[m] for r in v]) for m in METRICS if v and m in v[0]} for k, v in rows.items()}
    settings = {"model": model.NAME, "lr": lr, "wd": wd, "steps": steps, "rtol": rtol, "backend": name,
                "integrator": fl.integrator(0), **({"stopped": note} if note else {})}
    return GdFlow(kept, lr * kept.astype(np.float64), np.array(dist), tables["gd"], tables["flow"], settings)


def timed_flow(backend, model, config, params: dict, data, *, lr: float, wd: float, steps: int = FLOW_STEPS) -> dict:
    """The flow from ``params`` to t = lr x ``steps`` on ``backend`` (a ``get_backend`` Backend), timed.

    A warm-up integration compiles first. Returns the wall time, the gradients and steps it took and both per unit of
    time, beside GD's steps per unit of time (1 / lr); or ``{"note": why}`` where the backend has no such flow.
    """
    stepper = Flow()
    try:
        backend.run(model, config, params, data, lr=lr, wd=wd, steps=2, record=[0, 2], schedule=stepper)
    except errors.ConfigError as e:
        return {"note": str(e)}
    start = time.perf_counter()
    traj = backend.run(model, config, params, data, lr=lr, wd=wd, steps=steps, record=[0, steps], schedule=stepper)
    wall, i, T = time.perf_counter() - start, traj.config["integrator"], lr * steps
    return {"time": T, "flow_s": wall, "grad_evals": i["grad_evals"], "accepted": i["accepted"],
            "rejected": i["rejected"], "grads_per_time": i["grad_evals"] / T, "gd_steps_per_time": 1 / lr, "note": ""}


def flow_table(rows: list[dict]) -> list[str]:
    """``dichotomy bench``'s flow rows (:func:`timed_flow` beside GD's wall) as markdown lines."""
    lines = [f"The gradient flow (BS3, rtol 1e-6) from each workload's initialization to the time GD reaches in "
             f"{FLOW_STEPS:,} steps, beside those GD steps (their wall timed in the same run):", "",
             "| workload | engine | to time | flow s | gradients | per unit time | GD steps per unit time | GD s | "
             "GD / flow | note |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "time" not in r:
            lines.append(f"| {r['workload']} | {r['engine']} | | | | | | | | {r['note']} |")
            continue
        gd = f"{r['gd_s']:.3f}" if r.get("gd_s") else "—"
        ratio = f"{r['gd_over_flow']:.2f}×" if r.get("gd_over_flow") else ""
        lines.append(f"| {r['workload']} | {r['engine']} | {r['time']:g} | {r['flow_s']:.3f} | {r['grad_evals']:,} | "
                     f"{r['grads_per_time']:.3g} | {r['gd_steps_per_time']:g} | {gd} | {ratio} | {r['note']} |")
    return lines
