"""dichotomy train: one preset's run, its diagnosis and plot, into a folder it owns."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np

from dichotomy import diagnosis, errors
from dichotomy.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    OPS,
    add_checkpoint_options,
    add_flow_options,
    add_thread_options,
    backend_of,
    checkpoints_of,
    choices,
    count,
    flag01,
    flow_of,
    one_of,
    path_arg,
    seed,
    writable_dir,
)
from dichotomy.experiments import presets
from dichotomy.kernels import BACKENDS
from dichotomy.refimpl import data
from dichotomy.refimpl.limits import predictors
from dichotomy.refimpl.models import MODELS
from dichotomy.regime import gd_regime, sharpness_watch
from dichotomy.run.driver import DTYPES
from dichotomy.run.trajectory import Trajectory, load
from dichotomy.store import files, manifest
from dichotomy.store.keys import fingerprint
from dichotomy.store.resultset import ResultSet

log = logging.getLogger(__name__)

NAME = "train"


# option -> (field name, type, help, None or (what, its closed set of values)). Each overrides the preset's run,
# dataset or model setting.
OPTIONS = {
    "--steps": ("steps", count, "number of GD steps (0 records the initialization only)", None),
    "--lr": ("lr", float, "learning rate eta (> 0)", None),
    "--wd": ("wd", float, "weight decay lambda (>= 0), coupled: p <- p - lr (g + wd p)", None),
    "--seed": ("seed", seed, "dataset seed (an integer >= 0)", None),
    "--init-seed": ("init_seed", seed, "initialization seed, an integer >= 0 (ReLU MLP, perturbed matrix "
                    "completion)", None),
    "--dataset": ("dataset", str, "dataset generator", ("dataset", tuple(data.GENERATORS))),
    "--alpha": ("alpha", float, "init scale (>= 0): initial ||theta|| (diagonal net), U = V = alpha I "
                "(matrix completion)", None),
    "--depth": ("L", int, "depth L (diagonal net, ReLU MLP)", None),
    "--init-scale": ("init_scale", float, "He-init multiplier (ReLU MLP)", None),
    "--zero-last-layer": ("zero_last_layer", flag01, "1 (or true) to zero the last layer, 0 (or false) not to "
                          "(ReLU MLP)", None),
    "--sigma": ("sigma", float, "init perturbation std (matrix completion, Theorem 3.12)", None),
    "--h": ("h", int, "hidden width (ReLU MLP)", None),
    "--d": ("d", int, "input dimension (diagonal net) or matrix size (matrix completion)", None),
    "--n-train": ("n_train", int, "training examples (diagonal-net datasets)", None),
    "--n-test": ("n_test", int, "test examples (diagonal-net datasets)", None),
    "--k": ("k", int, "relevant coordinates, odd (sparse linear classification)", None),
    "--gamma": ("gamma", float, "L2 margin (L2-separated Gaussians)", None),
    "--p": ("p", int, "modulus (modular arithmetic)", None),
    "--op": ("op", str, "operation (modular arithmetic)", ("operation", OPS)),
    "--train-fraction": ("train_fraction", float, "fraction observed or trained on, in (0, 1) (matrix "
                         "completion, modular arithmetic)", None),
}


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    train = command("train", "train a model and write trajectory.npz, .json and .png",
                    "Train one model with full-batch gradient descent from a named experiment (a preset), "
                    "optionally overriding its settings, and write OUT/trajectory.npz and .json, the "
                    "dichotomy diagnostic OUT/diagnosis.json and a plot OUT/trajectory.png. A run that "
                    "diverges or is interrupted (Ctrl-C, SIGTERM) still saves what was recorded.")
    train.add_argument("model", nargs="?", default=None, **one_of("model", MODELS), metavar="MODEL",
                       help=f"the model: {choices(MODELS)} (optional with --preset, which names its model)")
    train.add_argument("--preset", **one_of("preset", presets.PRESETS), metavar="NAME",
                       help="named experiment, see 'dichotomy presets' (" + choices(presets.PRESETS)
                       + "); default: the model's quick one ("
                       + ", ".join(f"{m}: {p}" for m, p in presets.DEFAULT_PRESET.items()) + ")")
    for flag, (_, kind, text, closed) in OPTIONS.items():
        if closed is None:
            train.add_argument(flag, type=kind, default=None, help=text)
            continue
        long = max(map(len, closed[1])) > 3  # names: list them in the help, not in the usage line
        train.add_argument(flag, default=None, **one_of(*closed), metavar="NAME" if long else None,
                           help=f"{text}: {choices(closed[1])}" if long else text)
    train.add_argument("--backend", default="numba", **one_of("backend", BACKENDS),
                       help="training backend (default numba; numpy is the float64 reference)")
    train.add_argument("--dtype", default="float64", **one_of("dtype", DTYPES),
                       help="working precision of the backend (default float64; float32 needs numba or cupy)")
    add_thread_options(train)
    add_flow_options(train)
    train.add_argument("--out", required=True, type=path_arg, help="output directory (created if missing)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    add_checkpoint_options(train, "the run", "--restart", "discard OUT's checkpoint and finished run, and train "
                            "from step 0")
    train.add_argument("--no-limits", action="store_true",
                       help="skip the dichotomy diagnostic (distances to the kernel and late-phase limits) and the "
                            "lr x sharpness check of a GD run")
    train.add_argument("--sharpness", action="store_true",
                       help="record the sharpness (top Hessian eigenvalue, Lanczos) at every recorded step: costly, "
                            "tens of gradients each (docs/math.md §7.4)")


def summary(traj: Trajectory) -> str:
    m, lines = traj.metrics, []
    for key in ("train_acc", "test_acc", "train_loss", "test_loss", "param_norm"):
        if key in m and len(m[key]):
            lines.append(f"  {key:11s} {m[key][0]:.4g} -> {m[key][-1]:.4g}")
    if "train_acc" in m and np.any(m["train_acc"] == 1):
        lines.append(f"  train accuracy first 100% at step {traj.steps[np.argmax(m['train_acc'] == 1)]}")
    return "\n".join(lines)


def plot(traj: Trajectory, out: Path, title: str, diagnosis=None) -> list[Path]:
    if not len(traj):
        return []
    from dichotomy.plots import plot_trajectory

    return [plot_trajectory(traj, out / "trajectory.png", title, diagnosis)]


def run(args) -> int:
    if args.model is None and args.preset is None:
        raise errors.ConfigError(f"give a MODEL ({choices(MODELS)}) or a --preset (dichotomy presets lists them)")
    name = args.preset or presets.DEFAULT_PRESET[args.model]
    preset = presets.get(name)
    if args.model is not None and preset.model != args.model:
        raise errors.ConfigError(f"preset {name!r} is for {preset.model}, not {args.model}: drop MODEL "
                                 f"(dichotomy train --preset {name}) or name {preset.model}")
    args.model = preset.model
    changes = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, *_) in OPTIONS.items()}
    preset = presets.override(preset, **{k: v for k, v in changes.items() if v is not None})
    backend = backend_of(args)
    args.stepper = flow_of(args)
    out = writable_dir(args.out)
    with files.locked(out, "dichotomy train"):
        return train_into(args, out, name, preset, backend)


def train_into(args, out: Path, name: str, preset, backend) -> int:
    """Train into ``out`` (locked): reuse a verified finished run, else resume from its checkpoint or start."""
    run_config = {"preset": name, "seed": preset.seed, "init_seed": preset.init_seed, "model": args.model,
                  "dataset": preset.dataset, "backend": backend.name}
    stepper = getattr(args, "stepper", None)
    key = fingerprint({"preset": dataclasses.asdict(preset), **run_config, "dtype": args.dtype,
                       "limits": not args.no_limits, **({"stepper": stepper.describe()} if stepper else {}),
                       **({"sharpness": True} if args.sharpness else {})})
    title = f"{args.model} · {name} · lr={preset.lr:g} wd={preset.wd:g}" + _overrides(presets.get(name), preset)
    checkpoints = checkpoints_of(args, out / "checkpoint", exclusive=True, restart=args.restart)
    results = ResultSet(out, key)
    verdict = results.check()
    if verdict and not args.restart:
        traj = load(out / "trajectory")
        print(f"{out} already holds this run (every file matches its manifest): {preset.steps} steps of "
              f"{args.model} ({name}) on {backend.name}; --restart trains it again\n{summary(traj)}")
        return EXIT_OK
    if (out / manifest.NAME).exists() and not args.restart:
        log.warning("training again: %s", verdict.reason)
    module, config, params, dataset = presets.build(preset)
    probe = predictors.default_probe(dataset)
    results.begin()
    try:
        traj = backend.run(module, config, params, dataset, lr=preset.lr, wd=preset.wd, steps=preset.steps,
                           probe=probe, progress=not args.no_progress, run_config=run_config, dtype=args.dtype,
                           checkpoints=checkpoints, schedule=stepper,
                           watch=sharpness_watch(module, dataset, preset.wd) if args.sharpness else None)
    except (errors.TrainingDiverged, errors.TrainingInterrupted, errors.FlowFailed) as stop:
        if stop.trajectory is None:  # the flow could not start: nothing was recorded
            print(f"dichotomy: error: {stop}", file=sys.stderr)
            return EXIT_FAILED
        paths = list(stop.trajectory.save(out / "trajectory"))
        if not args.no_plot:
            paths += plot(stop.trajectory, out, title)
        kind = "" if isinstance(stop, errors.TrainingInterrupted) else "error: "
        resume = (f"; rerun the same command to resume from step {stop.step}"
                  if checkpoints is not None and isinstance(stop, errors.TrainingInterrupted) else "")
        print(f"dichotomy: {kind}{stop}; saved what was recorded: {', '.join(map(str, paths))}{resume}",
              file=sys.stderr)
        return getattr(stop, "exit_code", EXIT_FAILED)
    # The run is on disk before anything else is computed: a failing diagnostic or plot cannot lose it.
    paths = list(traj.save(out / "trajectory"))
    diag = None
    if not args.no_limits:
        try:
            diag = diagnosis.diagnose(traj, module, config, params, dataset, probe, lr=preset.lr,
                                            wd=preset.wd)
        except errors.DichotomyError as e:
            log.warning("no dichotomy diagnostic: %s (the trajectory is saved)", e)
        except Exception:
            log.error("dichotomy: the diagnostic failed; the trajectory is saved: %s", ", ".join(map(str, paths)))
            raise
    if diag is not None:
        paths.append(files.write_json(out / "diagnosis.json", diag.to_json()))
    regime = None
    if not args.no_limits and stepper is None:
        try:
            regime = gd_regime(module, config, params, traj, dataset, lr=preset.lr, wd=preset.wd)
            paths.append(files.write_json(out / "regime.json", regime.to_json()))
        except errors.DichotomyError as e:
            log.warning("no lr x sharpness check: %s (the trajectory is saved)", e)
    if not args.no_plot:
        paths += plot(traj, out, title, diag)
    results.seal(paths, checkpoints=checkpoints, command="train")
    how = (f"the gradient flow to t = {preset.lr * preset.steps:g} (the time of {preset.steps} steps at lr "
           f"{preset.lr:g}; {_cost(traj)})" if stepper else f"{preset.steps} steps")
    print(f"{args.model} ({name}), {how} on {backend.name} ({args.dtype}):\n{summary(traj)}")
    if diag is not None:
        print(f"dichotomy diagnostic (probe: first {len(probe)} test inputs):\n{diag.summary()}")
    if regime is not None:
        print(("" if regime.in_flow_regime else "warning: ") + regime.summary())
    print(f"wrote {', '.join(map(str, paths + [out / manifest.NAME]))}")
    return EXIT_OK


def _cost(traj: Trajectory) -> str:
    i = traj.config.get("integrator", {})
    return (f"{i.get('method')} at rtol {i.get('rtol'):g}: {i.get('grad_evals')} gradients, {i.get('accepted')} "
            f"steps accepted, {i.get('rejected')} rejected")


def _overrides(base, preset) -> str:
    """The settings in which ``preset`` differs from the named ``base`` (besides lr and wd), for the figure's title.

    A run at alpha = 0.5 says so on its plot.
    """
    was = {**base.data_args, **base.model_args, **{k: getattr(base, k) for k in ("steps", "seed", "dataset")}}
    now = {**preset.data_args, **preset.model_args, **{k: getattr(preset, k) for k in ("steps", "seed", "dataset")}}
    changed = {k: v for k, v in now.items() if was.get(k) != v}
    return "".join(f" · {k}={v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else f" · {k}={v}"
                   for k, v in changed.items())
