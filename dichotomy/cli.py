"""The dichotomy command: validate the paper's claims, train a preset, list presets, bench the engines,
crosscheck PyTorch/JAX against the reference, export golden reference trajectories.

Exit codes: 0 success; 1 training diverged or a claim / crosscheck failed; 2 bad input (a one-line
"dichotomy: error: ..." on stderr); 3 internal error (a bug: rerun with --debug for the traceback);
130 interrupted by SIGINT (Ctrl-C); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from dichotomy.kernels import BACKENDS, get_backend
from dichotomy.kernels import bench as bench_module
from dichotomy.kernels.adapters import ADAPTERS, MISTAKES
from dichotomy.refimpl import data, errors, files, manifest, presets
from dichotomy.refimpl.checkpoint import DEFAULT_EVERY, Checkpoints
from dichotomy.refimpl.limits import transition
from dichotomy.refimpl.models import MODELS
from dichotomy.refimpl.train import DTYPES
from dichotomy.refimpl.trajectory import Trajectory, load
from dichotomy.validation import cluster as cluster_module
from dichotomy.validation import phase as phase_module
from dichotomy.validation import suite
from dichotomy.validation import sweep as sweep_module
from dichotomy.validation.claim import config_hash

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 3, 130, 143

OPS = ("+", "-", "*", "/")  # the operations of data.modular_arithmetic

DESCRIPTION = (
    "Reproduce and explore the early/late implicit-bias dichotomy (Lyu et al., ICLR 2024): validate the "
    "paper's claims, train a named experiment, benchmark the engines, crosscheck PyTorch or JAX against the "
    "float64 reference, export golden trajectories. Exit codes: 0 success; 1 training diverged or a check "
    "failed; 2 bad input; 3 internal error; 130 interrupted (SIGINT); 143 terminated (SIGTERM).")


class UsageError(Exception):
    """A command-line parsing error, reported as one line (argparse's own format prints the usage too)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse calls this and expects it not to return
        raise UsageError(f"{message} (see {self.prog} --help)")


def _path(text: str) -> Path:
    """A path argument; an empty one (which Path would read as the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a folder or file name")
    return Path(text)


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop (the driver turns it into TrainingInterrupted inside one)."""

    signal_name, exit_code = "SIGTERM", EXIT_SIGTERM


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seeds are integers >= 0, got {text!r}")
    return value


def _flag01(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1 (or false / true), got {text!r}")


# option -> (field name, type, help, None or (what, its closed set of values)). Each overrides the preset's run,
# dataset or model setting.
_OPTIONS = {
    "--steps": ("steps", int, "number of GD steps (0 records the initialization only)", None),
    "--lr": ("lr", float, "learning rate eta (> 0)", None),
    "--wd": ("wd", float, "weight decay lambda (>= 0), coupled: p <- p - lr (g + wd p)", None),
    "--seed": ("seed", _seed, "dataset seed (an integer >= 0)", None),
    "--init-seed": ("init_seed", _seed, "initialization seed, an integer >= 0 (ReLU MLP, perturbed matrix "
                    "completion)", None),
    "--dataset": ("dataset", str, "dataset generator", ("dataset", tuple(data.GENERATORS))),
    "--alpha": ("alpha", float, "init scale (>= 0): initial ||theta|| (diagonal net), U = V = alpha I "
                "(matrix completion)", None),
    "--depth": ("L", int, "depth L (diagonal net, ReLU MLP)", None),
    "--init-scale": ("init_scale", float, "He-init multiplier (ReLU MLP)", None),
    "--zero-last-layer": ("zero_last_layer", _flag01, "1 (or true) to zero the last layer, 0 (or false) not to "
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


def _choices(names) -> str:
    return ", ".join(names)


def _one_of(what: str, names) -> dict:
    """add_argument keywords for a closed set: choices (for --help and introspection), and a type that names
    the set in its error ("unknown engine 'x'; choose from ..."), checked before argparse's own choices test."""
    names = tuple(names)

    def check(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose from {_choices(names)}")
        return text

    check.__name__ = what
    return {"type": check, "choices": names}


def _add_debug(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, raise it with its full traceback instead of a one-line message")


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds >= 0 (0 turns checkpoints off), got {text!r}")
    return value


def _add_checkpoint_options(parser, what: str, restart: str | None = None, restart_help: str = "") -> None:
    parser.add_argument("--checkpoint-every", type=_interval, default=None, metavar="SECONDS",
                        help=f"checkpoint {what} every SECONDS (default {DEFAULT_EVERY:g}, stretched so that "
                             "checkpoints cost under 1%% of the time; 0 turns them off); a rerun of the same command "
                             "resumes from the last one, bit for bit")
    if restart:
        parser.add_argument(restart, action="store_true", help=restart_help)


def _add_thread_options(parser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="numba backend: run on exactly N threads (default: 1 or all available cores, "
                             "whichever measures faster; docs/user-guide.md, 'Threads')")
    parser.add_argument("--layout", default=None, choices=("bits", "blocks"),
                        help="numba backend, diagonal net on +-1 data: hold X as bits or int8 column blocks "
                             "(default: the faster on this host, timed once and cached)")


def _threads(args) -> int | None:
    """--threads, checked (None: the engines choose)."""
    return None if args.threads is None else errors.positive_int("--threads", args.threads)


def _backend(args):
    """The --backend, with the numba engines' --threads and --layout when given."""
    return get_backend(args.backend, threads=_threads(args), layout=args.layout)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dichotomy", description=DESCRIPTION)
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="the command to run",
                                title="commands (dichotomy COMMAND --help for each one's options)")

    def command(name: str, summary: str, description: str):
        p = sub.add_parser(name, help=summary, description=description)
        _add_debug(p, argparse.SUPPRESS)  # --debug after the command too; SUPPRESS keeps the global value
        return p

    train = command("train", "train a model and write trajectory.npz, .json and .png",
                    "Train one model with full-batch gradient descent from a named experiment (a preset), "
                    "optionally overriding its settings, and write OUT/trajectory.npz and .json, the "
                    "dichotomy diagnostic OUT/diagnosis.json and a plot OUT/trajectory.png. A run that "
                    "diverges or is interrupted (Ctrl-C, SIGTERM) still saves what was recorded.")
    train.add_argument("model", **_one_of("model", MODELS), metavar="MODEL", help=f"the model: {_choices(MODELS)}")
    train.add_argument("--preset", **_one_of("preset", presets.PRESETS), metavar="NAME",
                       help="named experiment, see 'dichotomy presets' (" + _choices(presets.PRESETS)
                       + "); default: the model's quick one ("
                       + ", ".join(f"{m}: {p}" for m, p in presets.DEFAULT_PRESET.items()) + ")")
    for flag, (_, kind, text, closed) in _OPTIONS.items():
        if closed is None:
            train.add_argument(flag, type=kind, default=None, help=text)
            continue
        long = max(map(len, closed[1])) > 3  # names: list them in the help, not in the usage line
        train.add_argument(flag, default=None, **_one_of(*closed), metavar="NAME" if long else None,
                           help=f"{text}: {_choices(closed[1])}" if long else text)
    train.add_argument("--backend", default="numba", **_one_of("backend", BACKENDS),
                       help="training backend (default numba; numpy is the float64 reference)")
    train.add_argument("--dtype", default="float64", **_one_of("dtype", DTYPES),
                       help="working precision of the backend (default float64; float32 needs numba or cupy)")
    _add_thread_options(train)
    train.add_argument("--out", required=True, type=_path, help="output directory (created if missing)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    _add_checkpoint_options(train, "the run", "--restart", "discard OUT's checkpoint and finished run, and train "
                            "from step 0")
    train.add_argument("--no-limits", action="store_true",
                       help="skip the dichotomy diagnostic (distances to the kernel and late-phase limits)")

    command("presets", "list the named experiments", "List the named experiments (presets) that train takes.")

    cross = command("crosscheck", "compare the built-in PyTorch or JAX implementation with the reference",
                    "Train a small standard problem per model with the PyTorch or JAX implementation and compare "
                    "its outputs, gradients and trajectory with the float64 reference. Needs the peers extra.")
    cross.add_argument("--framework", required=True, **_one_of("framework", ADAPTERS), help="the framework to check")
    cross.add_argument("--model", nargs="+", default=list(MODELS), **_one_of("model", MODELS), metavar="MODEL",
                       help=f"models to check (default: all of {_choices(MODELS)})")
    cross.add_argument("--steps", type=int, default=100, help="trajectory length compared (default 100)")
    cross.add_argument("--rtol", type=float, default=1e-10, help="relative tolerance (default 1e-10)")
    cross.add_argument("--mistake", **_one_of("mistake", MISTAKES), default=None,
                       help="build the adapter with this deliberate slip, to see it caught (docs/crosscheck.md)")
    cross.add_argument("--json", type=_path, default=None, help="also write the reports to this JSON file")

    golden = command("export-golden", "write small reference trajectories (npz and json) per model",
                     "Write a small reference trajectory per model (OUT/MODEL.npz and OUT/MODEL.json), readable "
                     "without this package, to test another implementation against.")
    golden.add_argument("--out", required=True, type=_path, help="output directory (created if missing)")
    golden.add_argument("--model", nargs="+", default=list(MODELS), **_one_of("model", MODELS), metavar="MODEL",
                        help=f"models to export (default: all of {_choices(MODELS)})")
    golden.add_argument("--steps", type=int, default=20, help="steps per trajectory (default 20)")

    val = command("validate", "reproduce the paper's claims and write report.md and report.json",
                  "Run each claim of the paper, check its predictions against the measurements, and write "
                  "OUT/report.md and OUT/report.json. Claims already computed in OUT with the same config are "
                  "reused, so an interrupted run resumes where it stopped.")
    scale = val.add_mutually_exclusive_group()
    scale.add_argument("--quick", dest="scale", action="store_const", const="quick",
                       help="CPU scale, the whole suite in about 10 minutes on 2 cores (default)")
    scale.add_argument("--paper", dest="scale", action="store_const", const="paper",
                       help="the paper's exact configurations (hours to days on a CPU)")
    scale.add_argument("--scale", dest="scale", **_one_of("scale", suite.SCALES), help=argparse.SUPPRESS)
    val.set_defaults(scale="quick")
    val.add_argument("--backend", default="numba", **_one_of("backend", BACKENDS),
                     help="training backend (default numba)")
    _add_thread_options(val)
    val.add_argument("--only", nargs="+", metavar="CLAIM", **_one_of("claim", suite.CLAIMS),
                     help=f"run only these claims (default: all): {_choices(suite.CLAIMS)}")
    val.add_argument("--out", type=_path, default=Path("runs/validate"), help="output directory "
                     "(default runs/validate); claims already there with the same config are reused")
    val.add_argument("--force", action="store_true", help="recompute claims even if saved results match (their "
                     "checkpoints are discarded too)")
    _add_checkpoint_options(val, "each run of a claim")
    val.add_argument("--reuse-other-version", action="store_true",
                     help="reuse saved claims written by another version of the package (the report says so); "
                          "by default they are recomputed")
    val.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    val.add_argument("--docs", type=_path, default=None,
                     help="also write the report and its figures into this markdown file (docs/validation.md), "
                          "between its validate markers")

    sw = command("sweep", "train a preset over a grid of its fields and seeds into one store (docs/sweeps.md)",
                 "Train PRESET at every combination of the --grid values and --seeds, batching the runs that share "
                 "a dataset, in a pool of processes; store each run under OUT/runs/ and all of them in OUT/sweep.nc "
                 "(xarray.open_dataset). Rerunning the command trains only what is missing.")
    sw.add_argument("preset", nargs="?", default=None, **_one_of("preset", presets.PRESETS), metavar="PRESET",
                    help=f"the preset to sweep ({_choices(presets.PRESETS)}); or give --config")
    sw.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="an axis: a preset field or model option and its values (repeat for more axes)")
    sw.add_argument("--seeds", default=None, metavar="A:B", help="seeds A to B-1 (default 0:1); seed s draws the "
                    "dataset and the initial parameters with the preset's seeds + s")
    sw.add_argument("--steps", type=int, default=None, help="steps of every run (default: the preset's)")
    sw.add_argument("--config", type=_path, default=None, metavar="SWEEP_TOML",
                    help="read preset, steps, seeds, backend and a [grid] table from this TOML file")
    sw.add_argument("--backend", default=None, **_one_of("backend", BACKENDS), metavar="BACKEND",
                    help=f"{_choices(BACKENDS)} (default numba)")
    sw.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    sw.add_argument("--workers", type=int, default=None,
                    help="processes (default: one per available core, or per --threads cores, at most one per "
                         "batch; 1 trains in this process)")
    sw.add_argument("--threads", type=int, default=None, metavar="N",
                    help="threads of each worker's engine at most (default: its share of the available cores); "
                         "workers x threads may not exceed them")
    sw.add_argument("--batch", type=int, default=sweep_module.BATCH,
                    help=f"runs per batch at most (default {sweep_module.BATCH})")
    _add_checkpoint_options(sw, "each batch")
    dask = sw.add_argument_group("Dask (the optional extra 'cluster'; docs/sweeps.md)")
    dask.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="run the batches on this running Dask scheduler (tcp://HOST:PORT, used as given)")
    dask.add_argument("--cluster", default=None, **_one_of("cluster", cluster_module.KINDS), metavar="KIND",
                      help="start a Dask cluster for the sweep: local (worker processes on this machine, --workers "
                           "of them) or a job queue: slurm, pbs, sge")
    dask.add_argument("--jobs", type=int, default=None, help="job queue: jobs to submit (default 1)")
    dask.add_argument("--cores", type=int, default=None,
                      help="job queue: cores per job, one single-threaded worker each (default 1)")
    dask.add_argument("--memory", default=None, help="job queue: memory per job, e.g. 8GB (default 4GB)")
    dask.add_argument("--walltime", default=None, help="job queue: time limit per job, HH:MM:SS (default 01:00:00)")
    dask.add_argument("--queue", default=None, help="job queue: the queue or partition (default: the system's)")
    dask.add_argument("--job-script", action="store_true",
                      help="job queue: print the script each job would run, and exit without submitting")
    sw.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sw.add_argument("--out", required=True, type=_path, help="the sweep's store")

    ph = command("phase", "the switch time of every cell of a sweep against ln α / (ηλ), and a phase diagram",
                 "Read the sweep store DIR/sweep.nc; for every cell measure the switch of the test metric (mean over "
                 "seeds with its uncertainty) and its class (grokking, misgrokking, no switch), fit it against "
                 "t* = ln α / (ηλ), ln α and 1/λ; write DIR/phase.json and DIR/phase.png (docs/sweeps.md).")
    ph.add_argument("dir", type=_path, metavar="DIR", help="the folder dichotomy sweep --out wrote")
    ph.add_argument("--metric", default=None, help="the metric whose switch is measured (default test_acc, or "
                    "test_loss for regression)")
    ph.add_argument("--min-change", type=float, default=phase_module.MIN_CHANGE,
                    help="the least move of the metric that counts as a switch: absolute for accuracies, relative "
                         f"for losses (default {phase_module.MIN_CHANGE})")

    engines = (*BACKENDS, *bench_module.PEERS)
    bench = command("bench", "time every workload on every engine, side by side (docs/benchmarks.md)",
                    "Time every workload on every engine in one run, after checking each engine's parameters "
                    "against the float64 reference, and write OUT/bench.json and OUT/bench.md.")
    bench.add_argument("--workload", nargs="+", default=None, **_one_of("workload", bench_module.WORKLOADS),
                       metavar="WORKLOAD", help=f"workloads (default: all): {_choices(bench_module.WORKLOADS)}")
    bench.add_argument("--engine", nargs="+", default=["numpy", "numba", "torch", "jax"], **_one_of("engine", engines),
                       metavar="ENGINE", help=f"engines to time (default: numpy numba torch jax): "
                       f"{_choices(engines)}; torch and jax need the peers extra")
    bench.add_argument("--rtol", type=float, default=1e-8,
                       help="largest relative parameter difference from the reference for an engine to be timed "
                            "(default 1e-8)")
    bench.add_argument("--load", type=int, default=0, metavar="N",
                       help="also time every engine beside N busy processes (started and stopped by the bench; "
                            "one per core is a fully busy machine), and report each one's slowdown (default 0)")
    bench.add_argument("--out", required=True, type=_path, help="output directory for bench.json and bench.md")
    bench.add_argument("--docs", type=_path, default=None, help="also write the table into this markdown file")
    bench.add_argument("--json", type=_path, default=None,
                       help="also write the report (times, ratios, roofline fractions, floors, ceilings, host) to "
                            "this JSON file")
    bench.add_argument("--from-json", type=_path, default=None, metavar="BENCH_JSON",
                       help="time nothing: render the report saved in this bench.json (its ratios, roofline "
                            "fractions and ceilings) into --out and --docs")
    return parser


# --- checks made before any compute ----------------------------------------------------------------------

_created: list[Path] = []  # directories this command created; removed again if it fails and they are empty


def _writable_dir(path: Path, label: str = "--out directory") -> Path:
    """Create ``path`` if needed and prove it writable (write and delete a probe file), or a ConfigError."""
    if path.exists() and not path.is_dir():
        raise errors.ConfigError(f"{label} {path} is a file, not a directory")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise errors.ConfigError(f"cannot create {label} {path}: {e.strerror or e}") from None
    _created.extend(missing)  # deepest first
    probe = path / f".dichotomy-write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise errors.ConfigError(f"cannot write into {label} {path}: {e.strerror or e}") from None
    return path


def _writable_file(path: Path, option: str) -> Path:
    """Prove the file ``path`` can be written (its folder is created), without changing it, or a ConfigError."""
    if path.is_dir():
        raise errors.ConfigError(f"{option} {path} is a directory; give a file name")
    _writable_dir(path.parent, f"the folder of {option}")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise errors.ConfigError(f"cannot write {option} file {path}: {e.strerror or e}") from None
    return path


def _remove_created() -> None:
    """After a failure, remove the directories this command created that are still empty."""
    for path in _created:
        try:
            if [p.name for p in path.iterdir()] == [files.LOCK_NAME]:
                files.remove_lock(path)  # only when no other process holds it
            path.rmdir()
        except OSError:
            pass
    _created.clear()


# --- train -----------------------------------------------------------------------------------------------

def _summary(traj: Trajectory) -> str:
    m, lines = traj.metrics, []
    for key in ("train_acc", "test_acc", "train_loss", "test_loss", "param_norm"):
        if key in m and len(m[key]):
            lines.append(f"  {key:11s} {m[key][0]:.4g} -> {m[key][-1]:.4g}")
    if "train_acc" in m and np.any(m["train_acc"] == 1):
        lines.append(f"  train accuracy first 100% at step {traj.steps[np.argmax(m['train_acc'] == 1)]}")
    return "\n".join(lines)


def _plot(traj: Trajectory, out: Path, title: str, diagnosis=None) -> list[Path]:
    if not len(traj):
        return []
    from dichotomy.validation.plots import plot_trajectory

    return [plot_trajectory(traj, out / "trajectory.png", title, diagnosis)]


def _checkpoints(args, folder: Path, **kwargs) -> Checkpoints | None:
    """The --checkpoint-every policy for runs checkpointing into ``folder`` (None when turned off)."""
    every = args.checkpoint_every
    return None if every == 0 else Checkpoints(folder, every=every, **kwargs)


def _train(args) -> int:
    name = args.preset or presets.DEFAULT_PRESET[args.model]
    preset = presets.get(name)
    if preset.model != args.model:
        raise errors.ConfigError(f"preset {name!r} is for {preset.model}, not {args.model}")
    changes = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, *_) in _OPTIONS.items()}
    preset = presets.override(preset, **{k: v for k, v in changes.items() if v is not None})
    backend = _backend(args)
    out = _writable_dir(args.out)
    with files.locked(out, "dichotomy train"):
        return _train_into(args, out, name, preset, backend)


def _train_into(args, out: Path, name: str, preset, backend) -> int:
    """Train into ``out`` (locked): reuse a verified finished run, else resume from its checkpoint or start."""
    run_config = {"preset": name, "seed": preset.seed, "init_seed": preset.init_seed, "model": args.model,
                  "dataset": preset.dataset, "backend": backend.name}
    key = config_hash({"preset": dataclasses.asdict(preset), **run_config, "dtype": args.dtype,
                       "limits": not args.no_limits})
    title = f"{args.model} · {name} · lr={preset.lr:g} wd={preset.wd:g}"
    checkpoints = _checkpoints(args, out / "checkpoint", exclusive=True, restart=args.restart)
    verdict = manifest.check(out, key)
    if verdict and not args.restart:
        traj = load(out / "trajectory")
        print(f"{out} already holds this run (every file matches its manifest): {preset.steps} steps of "
              f"{args.model} ({name}) on {backend.name}; --restart trains it again\n{_summary(traj)}")
        return EXIT_OK
    if (out / manifest.NAME).exists() and not args.restart:
        log.warning("training again: %s", verdict.reason)
    module, config, params, dataset = presets.build(preset)
    probe = transition.default_probe(dataset)
    manifest.invalidate(out)
    try:
        traj = backend.run(module, config, params, dataset, lr=preset.lr, wd=preset.wd, steps=preset.steps,
                           probe=probe, progress=not args.no_progress, run_config=run_config, dtype=args.dtype,
                           checkpoints=checkpoints)
    except (errors.TrainingDiverged, errors.TrainingInterrupted) as stop:
        paths = list(stop.trajectory.save(out / "trajectory"))
        if not args.no_plot:
            paths += _plot(stop.trajectory, out, title)
        kind = "error: " if isinstance(stop, errors.TrainingDiverged) else ""
        resume = (f"; rerun the same command to resume from step {stop.step}"
                  if checkpoints is not None and isinstance(stop, errors.TrainingInterrupted) else "")
        print(f"dichotomy: {kind}{stop}; saved what was recorded: {', '.join(map(str, paths))}{resume}",
              file=sys.stderr)
        return getattr(stop, "exit_code", EXIT_FAILED)
    # The run is on disk before anything else is computed: a failing diagnostic or plot cannot lose it.
    paths = list(traj.save(out / "trajectory"))
    diagnosis = None
    if not args.no_limits:
        try:
            diagnosis = transition.diagnose(traj, module, config, params, dataset, probe, lr=preset.lr,
                                            wd=preset.wd)
        except errors.DichotomyError as e:
            log.warning("no dichotomy diagnostic: %s (the trajectory is saved)", e)
        except Exception:
            log.error("dichotomy: the diagnostic failed; the trajectory is saved: %s", ", ".join(map(str, paths)))
            raise
    if diagnosis is not None:
        paths.append(files.write_json(out / "diagnosis.json", diagnosis.to_json()))
    if not args.no_plot:
        paths += _plot(traj, out, title, diagnosis)
    manifest.write(out, paths, key, command="train")
    if checkpoints is not None:
        checkpoints.clear()
    print(f"{args.model} ({name}), {preset.steps} steps on {backend.name} ({args.dtype}):\n{_summary(traj)}")
    if diagnosis is not None:
        print(f"dichotomy diagnostic (probe: first {len(probe)} test inputs):\n{diagnosis.summary()}")
    print(f"wrote {', '.join(map(str, paths + [out / manifest.NAME]))}")
    return EXIT_OK


# --- the other commands ----------------------------------------------------------------------------------

def _bench(args) -> int:
    names = args.workload or list(bench_module.WORKLOADS)
    unknown = [n for n in names if n not in bench_module.WORKLOADS]
    if unknown:
        raise errors.ConfigError(f"unknown workload {unknown[0]!r}; choose from {_choices(bench_module.WORKLOADS)}")
    engines = bench_module.check_engines(args.engine)
    rtol = errors.positive("rtol", args.rtol)
    for option, path in (("--docs", args.docs), ("--json", args.json)):
        if path is not None:
            _writable_file(path, option)
    saved = bench_module.load(args.from_json) if args.from_json is not None else None
    _writable_dir(args.out)
    with files.locked(args.out, "dichotomy bench"):
        report = saved or bench_module.bench(names, engines, rtol=rtol, load=args.load)
        paths = bench_module.write(report, args.out, args.docs)
        if args.json is not None:
            paths.append(files.write_json(args.json, report))
    print(bench_module.markdown(report) + f"wrote {', '.join(map(str, paths))}")
    return EXIT_OK


def _validate(args) -> int:
    names = suite.select(args.only)
    backend = _backend(args)
    if args.docs is not None:
        suite.check_docs(args.docs, args.scale)
        _writable_file(args.docs, "--docs")
    _writable_dir(args.out)
    try:
        with files.locked(args.out, "dichotomy validate"):
            reports = suite.run(names, args.scale, backend, args.out, progress=not args.no_progress,
                                force=args.force, checkpoint_every=args.checkpoint_every,
                                reuse_other_version=args.reuse_other_version)
    except KeyboardInterrupt as stop:
        print(f"dichotomy: interrupted ({getattr(stop, 'signal_name', 'SIGINT')}); the claims finished so far are "
              f"in {args.out / 'report.md'}, and a rerun resumes from the first unfinished one", file=sys.stderr)
        return getattr(stop, "exit_code", EXIT_SIGINT)
    if args.docs is not None:
        suite.write_docs(reports, args.scale, backend.name, args.docs)
    failed = [r.name for r in reports if not r.passed]
    print(f"{len(reports) - len(failed)} of {len(reports)} claims pass"
          + (f" (failed: {', '.join(failed)})" if failed else "") + f"; report: {args.out / 'report.md'}")
    return EXIT_FAILED if failed else EXIT_OK


def _crosscheck(args) -> int:
    from dichotomy.kernels.adapters import adapter
    from dichotomy.refimpl import crosscheck

    steps = errors.step_count("steps", args.steps, minimum=1)
    rtol = errors.positive("rtol", args.rtol)
    if args.json is not None:
        _writable_file(args.json, "--json")
    reports = []
    for name in args.model:
        module, config, params, ds, lr, wd = crosscheck.problem(name)
        if args.mistake == "half-mse" and ds.loss != "squared":
            print(f"{name}: skipped (half-mse applies to the squared loss only)")
            continue
        peer = adapter(args.framework, module, config, ds.loss, args.mistake)
        report = crosscheck.crosscheck(module, config, params, ds, lr=lr, wd=wd, steps=steps, rtol=rtol,
                                       forward=peer.forward, loss_and_grad=peer.loss_and_grad,
                                       step=peer.make_step(ds.X_train, ds.y_train, lr, wd), framework=args.framework)
        print(report.table())
        reports.append(report)
    if args.json is not None:
        files.write_json(args.json, [r.to_json() for r in reports])
    return EXIT_OK if all(r.passed for r in reports) else EXIT_FAILED


def _export_golden(args) -> int:
    from dichotomy.refimpl import crosscheck

    steps = errors.step_count("steps", args.steps, minimum=1)
    _writable_dir(args.out)
    with files.locked(args.out, "dichotomy export-golden"):
        for name in args.model:
            print("wrote " + ", ".join(map(str, crosscheck.write_golden(args.out, name, steps))))
    return EXIT_OK


def _presets(args) -> int:
    for name, p in presets.PRESETS.items():
        print(f"{name:12s} {p.model:18s} {p.steps:>11,d} steps  {p.description}")
    return EXIT_OK


def _phase(args) -> int:
    min_change = errors.positive("--min-change", args.min_change)
    store = phase_module.load(args.dir)  # a one-line error before anything is written
    with files.locked(args.dir, "dichotomy phase"):
        result, paths = phase_module.write(args.dir, args.metric, min_change, store=store)
    print(phase_module.summary(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK


def _job_spec(args) -> cluster_module.JobSpec | None:
    """The job-queue options as a JobSpec (None without --cluster slurm|pbs|sge), refusing them elsewhere."""
    given = {k: getattr(args, k) for k in ("jobs", "cores", "memory", "walltime", "queue")}
    given = {k: v for k, v in given.items() if v is not None}
    if args.scheduler is not None and args.cluster is not None:
        raise errors.ConfigError("give either --scheduler ADDRESS or --cluster KIND, not both")
    if args.cluster not in cluster_module.QUEUES:
        if given:
            raise errors.ConfigError(f"--{next(iter(given))} is for a job queue: add --cluster slurm, pbs or sge")
        return None
    return cluster_module.JobSpec(args.cluster, **given)


def _sweep(args) -> int:
    spec = {"preset": args.preset, "axes": {}, "seeds": [0], "steps": None}
    backend = args.backend
    if args.config is not None:
        spec = sweep_module.read_config(args.config)
        backend = backend or spec.pop("backend", None)
        if args.preset is not None and args.preset != spec["preset"]:
            raise errors.ConfigError(f"PRESET {args.preset} differs from --config's preset {spec['preset']}")
    elif args.preset is None:
        raise errors.ConfigError("give PRESET (dichotomy presets lists them) or --config SWEEP_TOML")
    for text in args.grid:
        name, values = sweep_module.parse_axis(text)
        if name in spec["axes"]:
            raise errors.ConfigError(f"--grid {name} is given twice")
        spec["axes"][name] = values
    if args.seeds is not None:
        spec["seeds"] = sweep_module.parse_seeds(args.seeds)
    if args.steps is not None:
        spec["steps"] = args.steps
    grid = sweep_module.grid(**spec)
    backend = get_backend(backend or "numba").name
    workers = None if args.workers is None else errors.positive_int("--workers", args.workers)
    threads = _threads(args)
    batch = errors.positive_int("--batch", args.batch)
    job = _job_spec(args)
    if args.job_script:
        if job is None:
            raise errors.ConfigError("--job-script shows a job queue's script: give --cluster slurm, pbs or sge")
        print(cluster_module.job_script(job))
        return EXIT_OK
    if workers is not None and (args.scheduler is not None or job is not None):
        raise errors.ConfigError("--workers sizes local execution (a pool or --cluster local); a scheduler or job "
                                 "queue has its own workers")
    _writable_dir(args.out)
    executor = contextlib.nullcontext(None)
    if args.scheduler is not None or args.cluster is not None:
        executor = cluster_module.executor(scheduler=args.scheduler, cluster=args.cluster, job=job, threads=threads,
                                           workers=workers or sweep_module.default_workers(threads=threads))
    with files.locked(args.out, "dichotomy sweep"), executor as execute:
        outcome = sweep_module.run(grid, args.out, backend=backend, dtype=args.dtype, workers=workers, batch=batch,
                                   checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                                   executor=execute, threads=threads)
    print(f"{outcome.total} runs: {outcome.reused} already stored, {outcome.trained} trained, "
          f"{len(outcome.failed)} failed; wrote {outcome.store}")
    for key, reason in outcome.failed.items():
        print(f"  failed: {key}: {_one_line(reason)}")
    return EXIT_FAILED if outcome.failed else EXIT_OK


COMMANDS = {"train": _train, "bench": _bench, "sweep": _sweep, "phase": _phase, "validate": _validate,
            "crosscheck": _crosscheck, "export-golden": _export_golden, "presets": _presets}


# --- main ------------------------------------------------------------------------------------------------

class _Format(logging.Formatter):
    """Plain messages; warnings and errors say so."""

    def format(self, record):
        msg = super().format(record)
        if record.levelno >= logging.WARNING and not msg.startswith("dichotomy:"):
            msg = f"dichotomy: {record.levelname.lower()}: {msg}"
        return msg


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(text: str) -> None:
    print(f"dichotomy: error: {_one_line(text)}", file=sys.stderr)


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the dichotomy console command; returns the exit code (see DESCRIPTION)."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        _error(e)
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format("%(message)s"))
    package = logging.getLogger("dichotomy")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if on_main else None
    _created.clear()
    code = EXIT_INTERNAL
    try:
        code = COMMANDS[args.command](args)
        return code
    except errors.TrainingDiverged as e:  # outside train (which saves and reports its own)
        if args.debug:
            raise
        _error(e)
        return EXIT_FAILED
    except KeyboardInterrupt as e:  # TrainingInterrupted, Ctrl-C or SIGTERM outside a training loop
        name = getattr(e, "signal_name", "SIGINT")
        print(f"dichotomy: interrupted ({name})", file=sys.stderr)
        return getattr(e, "exit_code", EXIT_SIGINT)
    except errors.DichotomyError as e:  # ConfigError, BackendUnavailable: bad input
        if args.debug:
            raise
        _error(e)
        return EXIT_USAGE
    except MemoryError as e:  # a size too large for this machine (d, n, seeds): not a bug, the input's
        if args.debug:
            raise
        _error(f"out of memory{f' ({_one_line(e)})' if str(e) else ''}: this machine cannot hold what was asked "
               "for; lower the sizes (d, n_train, n_test, p, h) or the number of seeds and grid values")
        return EXIT_USAGE
    except OSError as e:  # the file system refused (disk full, a path vanished): not a bug, nothing to debug
        if args.debug:
            raise
        _error(f"{e.strerror or e}: {e.filename}" if e.filename else e)
        return EXIT_USAGE
    except Exception as e:
        if args.debug:
            raise
        what = ": ".join(filter(None, (type(e).__name__, _one_line(e))))
        print(f"dichotomy: internal error: {what} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if code != EXIT_OK:
            _remove_created()
        if on_main:
            signal.signal(signal.SIGTERM, previous)
        package.removeHandler(handler)
        package.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
