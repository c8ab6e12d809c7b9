"""The flow against GD: a claim through the flow checked against GD over a prefix; a GD claim's lr x sharpness.

``dichotomy validate --flow`` integrates a claim's run as the gradient flow (:class:`refimpl.steppers.Flow`) at
the times GD would reach. This module runs GD itself, at the claim's own learning rate, beside the flow over the
first ``gd_prefix`` steps (what GD reaches in a minute or two; :func:`dichotomy.run.gd_flow.gd_vs_flow`), at the
flow's recorded steps, and checks the largest relative parameter distance
||theta_GD(s) - theta_flow(lr s)|| / ||theta_flow|| against the claim's ``gd_agreement``. GD approximates the flow
at O(lr) while lr x sharpness stays well below 2 (docs/math.md §7). :func:`gd_regime` measures that for a claim
trained by GD, and the report notes a run at or above 2.
"""

from __future__ import annotations

import numpy as np

from dichotomy import regime
from dichotomy.experiments import presets, runs
from dichotomy.run.gd_flow import gd_vs_flow
from dichotomy.run.trajectory import Trajectory
from dichotomy.validation.claim import Check


def gd_prefix(config: dict, backend, flow: Trajectory, *, progress: bool = False) -> tuple[dict, dict]:
    """GD beside the flow over the claim's first ``config["gd_prefix"]`` steps: the values and arrays to save."""
    spec = {k: v for k, v in config["run"].items() if k != "flow"}
    preset = runs.preset_of(spec)
    module, model_config, params, data = presets.build(preset)
    record = flow.steps[flow.steps <= int(config["gd_prefix"])]
    cmp = gd_vs_flow(module, model_config, params, data, lr=preset.lr, wd=preset.wd, steps=int(record[-1]),
                     record=record, engine=backend.engine, rtol=config["run"]["flow"]["rtol"], metrics=False,
                     progress=progress, label="GD beside the flow")
    i = int(np.argmax(cmp.distance))
    values = {"gd_prefix_steps": int(cmp.steps[-1]), "flow_gd_distance_max": float(cmp.distance[i]),
              "flow_gd_distance_max_step": int(cmp.steps[i]), "flow_gd_distance_final": float(cmp.distance[-1])}
    if "stopped" in cmp.settings:
        values["notes"] = [f"GD beside the flow: {cmp.settings['stopped']}"]
    arrays = {"gd_flow_steps": cmp.steps, "gd_flow_distance": cmp.distance}
    return values, arrays


def checks(values: dict, config: dict) -> list[Check]:
    """GD at the claim's learning rate stays within the claim's tolerance of the flow over the prefix."""
    if "flow_gd_distance_max" not in values:
        return []
    return [Check.bound("flow = GD", f"max over GD's first {values['gd_prefix_steps']:.3g} steps of "
                        "‖θ_GD(s) − θ_flow(lr·s)‖ / ‖θ_flow‖ (GD at the claim's lr)",
                        values["flow_gd_distance_max"], high=config["gd_agreement"])]


def gd_regime(config: dict, results) -> dict:
    """lr x sharpness at both ends of a claim's GD run ``results.trajectories["run"]``, and a note if >= 2.

    Claims without one plain GD run from a preset (a sweep, the loss-normalized schedule, the flow) get nothing.
    """
    spec, traj = config.get("run"), results.trajectories.get("run")
    if not spec or "preset" not in spec or traj is None or "schedule" in traj.config or "stepper" in traj.config:
        return {}
    preset = runs.preset_of(spec)
    module, model_config, params, data = presets.build(preset)
    r = regime.gd_regime(module, model_config, params, traj, data, lr=preset.lr, wd=preset.wd)
    values = {"lr_sharpness_init": preset.lr * r.sharpness_init, "lr_sharpness_final": preset.lr * r.sharpness_final}
    return values if r.in_flow_regime else {**values, "notes": [f"Gradient-flow regime: {r.summary()}."]}
