"""The ``dichotomy`` command: ``validate`` the paper's claims, ``train`` a preset, list ``presets``, ``bench``,
``crosscheck`` PyTorch/JAX against the reference, ``export-golden`` reference trajectories."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dichotomy.kernels import BACKENDS, BackendUnavailable, get_backend
from dichotomy.refimpl import errors, presets
from dichotomy.refimpl.limits import transition
from dichotomy.refimpl.models import MODELS
from dichotomy.refimpl.trajectory import Trajectory

# option -> (field name, type, help). Each overrides the preset's run, dataset or model setting.
_OPTIONS = {
    "--steps": ("steps", int, "number of GD steps"),
    "--lr": ("lr", float, "learning rate eta"),
    "--wd": ("wd", float, "weight decay lambda (coupled: p <- p - lr (g + wd p))"),
    "--seed": ("seed", int, "dataset seed"),
    "--init-seed": ("init_seed", int, "initialization seed (ReLU MLP, perturbed matrix factorization)"),
    "--dataset": ("dataset", str, "dataset generator (e.g. sparse_linear_classification)"),
    "--alpha": ("alpha", float, "init scale: initial ||theta|| (diagonal net), U = V = alpha I (completion)"),
    "--depth": ("L", int, "depth L (diagonal net, ReLU MLP)"),
    "--init-scale": ("init_scale", float, "He-init multiplier (ReLU MLP)"),
    "--zero-last-layer": ("zero_last_layer", lambda s: bool(int(s)), "1 to zero the last layer (ReLU MLP)"),
    "--sigma": ("sigma", float, "init perturbation std (matrix completion, Theorem 3.12)"),
    "--h": ("h", int, "hidden width (ReLU MLP)"),
    "--d": ("d", int, "input dimension (diagonal net) or matrix size (completion)"),
    "--n-train": ("n_train", int, "training examples (diagonal net datasets)"),
    "--n-test": ("n_test", int, "test examples (diagonal net datasets)"),
    "--k": ("k", int, "relevant coordinates, odd (sparse classification)"),
    "--gamma": ("gamma", float, "L2 margin (L2-separated Gaussians)"),
    "--p": ("p", int, "modulus (modular arithmetic)"),
    "--op": ("op", str, "operation + - * / (modular arithmetic)"),
    "--train-fraction": ("train_fraction", float, "fraction observed/trained (completion, modular arithmetic)"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dichotomy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model and write trajectory.{npz,json,png}")
    train.add_argument("model", choices=list(MODELS))
    train.add_argument("--preset", help="named experiment (see `dichotomy presets`); default: the model's "
                       + ", ".join(f"{m}: {p}" for m, p in presets.DEFAULT_PRESET.items()))
    for flag, (_, kind, text) in _OPTIONS.items():
        train.add_argument(flag, type=kind, help=text, default=None)
    train.add_argument("--backend", default="numpy", choices=BACKENDS)
    train.add_argument("--out", required=True, type=Path, help="output directory")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    train.add_argument("--no-limits", action="store_true",
                       help="skip the dichotomy diagnostic (distances to the kernel and late-phase limits)")
    sub.add_parser("presets", help="list the named experiments")
    cross = sub.add_parser("crosscheck", help="compare the built-in PyTorch or JAX implementation with the reference")
    cross.add_argument("--framework", required=True, choices=("torch", "jax"))
    cross.add_argument("--model", nargs="+", default=list(MODELS), choices=list(MODELS),
                       help="models to check (default: all three)")
    cross.add_argument("--steps", type=int, default=100, help="trajectory length compared (default 100)")
    cross.add_argument("--rtol", type=float, default=1e-10, help="relative tolerance (default 1e-10)")
    cross.add_argument("--mistake", choices=("decoupled", "sum", "float32", "half-mse"), default=None,
                       help="build the adapter with this deliberate slip, to see it caught (docs/crosscheck.md)")
    cross.add_argument("--json", type=Path, default=None, help="also write the reports to this JSON file")
    golden = sub.add_parser("export-golden", help="write small reference trajectories (npz + json) per model")
    golden.add_argument("--out", required=True, type=Path, help="output directory")
    golden.add_argument("--model", nargs="+", default=list(MODELS), choices=list(MODELS))
    golden.add_argument("--steps", type=int, default=20, help="steps per trajectory (default 20)")
    val = sub.add_parser("validate", help="reproduce the paper's claims and write report.md / report.json")
    scale = val.add_mutually_exclusive_group()
    scale.add_argument("--quick", dest="scale", action="store_const", const="quick",
                       help="CPU scale, the whole suite in ~10 minutes on 2 cores (default)")
    scale.add_argument("--paper", dest="scale", action="store_const", const="paper",
                       help="the paper's exact configurations (hours to days on a CPU)")
    scale.add_argument("--scale", dest="scale", choices=("quick", "paper", "test"), help=argparse.SUPPRESS)
    val.set_defaults(scale="quick")
    val.add_argument("--backend", default="numba", choices=BACKENDS, help="training backend (default numba)")
    val.add_argument("--only", nargs="+", metavar="CLAIM", help="run only these claims (default: all): "
                     "fig1a fig1b fig2 fig3 fig4 scaling sample_complexity")
    val.add_argument("--out", type=Path, default=Path("runs/validate"), help="output directory "
                     "(default runs/validate); claims already there with the same config are reused")
    val.add_argument("--force", action="store_true", help="recompute claims even if saved results match")
    val.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    val.add_argument("--docs", type=Path, default=None,
                     help="also write the report and its figures into this markdown file (docs/validation.md)")
    bench = sub.add_parser("bench", help="time every workload on every engine, side by side (docs/benchmarks.md)")
    bench.add_argument("--workload", nargs="+", default=None, help="workloads (default: all): "
                       "diag-20k diag-100k mc mlp-256 mlp-1024")
    bench.add_argument("--engine", nargs="+", default=["numpy", "numba", "torch", "jax"],
                       help="engines to time (torch and jax need the peers extra)")
    bench.add_argument("--out", required=True, type=Path, help="output directory for bench.json and bench.md")
    bench.add_argument("--docs", type=Path, default=None, help="also write the table into this markdown file")
    return parser


def _summary(traj: Trajectory) -> str:
    m, lines = traj.metrics, []
    for key in ("train_acc", "test_acc", "train_loss", "test_loss", "param_norm"):
        if key in m:
            lines.append(f"  {key:11s} {m[key][0]:.4g} -> {m[key][-1]:.4g}")
    if "train_acc" in m and np.any(m["train_acc"] == 1):
        lines.append(f"  train accuracy first 100% at step {traj.steps[np.argmax(m['train_acc'] == 1)]}")
    return "\n".join(lines)


def _save(traj: Trajectory, out: Path, title: str, plot: bool, diagnosis=None) -> list[Path]:
    paths = list(traj.save(out / "trajectory"))
    if diagnosis is not None:
        paths.append(out / "diagnosis.json")
        paths[-1].write_text(json.dumps(diagnosis.to_json(), indent=1) + "\n")
    if plot and len(traj):
        from dichotomy.validation.plots import plot_trajectory

        paths.append(plot_trajectory(traj, out / "trajectory.png", title, diagnosis))
    return paths


def _train(args) -> int:
    name = args.preset or presets.DEFAULT_PRESET[args.model]
    preset = presets.get(name)
    if preset.model != args.model:
        raise errors.ConfigError(f"preset {name!r} is for {preset.model}, not {args.model}")
    changes = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in _OPTIONS.items()}
    preset = presets.override(preset, **{k: v for k, v in changes.items() if v is not None})
    backend = get_backend(args.backend)
    module, config, params, dataset = presets.build(preset)
    title = f"{args.model} · {name} · lr={preset.lr:g} wd={preset.wd:g}"
    run_config = {"preset": name, "seed": preset.seed, "init_seed": preset.init_seed, "model": args.model,
                  "dataset": preset.dataset, "backend": backend.name}
    probe = transition.default_probe(dataset)
    try:
        traj = backend.run(module, config, params, dataset, lr=preset.lr, wd=preset.wd, steps=preset.steps,
                           probe=probe, progress=not args.no_progress, run_config=run_config)
    except (errors.TrainingDiverged, errors.TrainingInterrupted) as stop:
        paths = _save(stop.trajectory, args.out, title, not args.no_plot)
        print(f"dichotomy: error: {stop}\n  saved what was recorded: {', '.join(map(str, paths))}",
              file=sys.stderr)
        return 1 if isinstance(stop, errors.TrainingDiverged) else 130
    diagnosis = None
    if not args.no_limits:
        diagnosis = transition.diagnose(traj, module, config, params, dataset, probe, lr=preset.lr, wd=preset.wd)
    paths = _save(traj, args.out, title, not args.no_plot, diagnosis)
    print(f"{args.model} ({name}), {preset.steps} steps:\n{_summary(traj)}")
    if diagnosis is not None:
        print(f"dichotomy diagnostic (probe: first {len(probe)} test inputs):\n{diagnosis.summary()}")
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


def _bench(args) -> int:
    from dichotomy.kernels import bench

    names = args.workload or list(bench.WORKLOADS)
    unknown = [n for n in names if n not in bench.WORKLOADS]
    if unknown:
        raise errors.ConfigError(f"unknown workload {unknown[0]!r}; choose from {', '.join(bench.WORKLOADS)}")
    report = bench.bench(names, args.engine)
    paths = bench.write(report, args.out, args.docs)
    print(bench.markdown(report) + f"wrote {', '.join(map(str, paths))}")
    return 0


def _validate(args) -> int:
    from dichotomy.validation import suite

    names = suite.select(args.only)
    backend = get_backend(args.backend)
    try:
        reports = suite.run(names, args.scale, backend, args.out, progress=not args.no_progress, force=args.force)
    except KeyboardInterrupt:
        print(f"dichotomy: interrupted; the claims finished so far are in {args.out / 'report.md'}, and a rerun "
              "resumes from the first unfinished one", file=sys.stderr)
        return 130
    if args.docs is not None:
        suite.write_docs(reports, args.scale, backend.name, args.docs)
    failed = [r.name for r in reports if not r.passed]
    print(f"{len(reports) - len(failed)} of {len(reports)} claims pass"
          + (f" (failed: {', '.join(failed)})" if failed else "") + f"; report: {args.out / 'report.md'}")
    return 1 if failed else 0


def _crosscheck(args) -> int:
    from dichotomy.kernels.adapters import adapter
    from dichotomy.refimpl import crosscheck

    reports = []
    for name in args.model:
        module, config, params, ds, lr, wd = crosscheck.problem(name)
        if args.mistake == "half-mse" and ds.loss != "squared":
            print(f"{name}: skipped (half-mse applies to the squared loss only)")
            continue
        peer = adapter(args.framework, module, config, ds.loss, args.mistake)
        report = crosscheck.crosscheck(module, config, params, ds, lr=lr, wd=wd, steps=args.steps, rtol=args.rtol,
                                       forward=peer.forward, loss_and_grad=peer.loss_and_grad,
                                       step=peer.make_step(ds.X_train, ds.y_train, lr, wd), framework=args.framework)
        print(report.table())
        reports.append(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_json() for r in reports], indent=1) + "\n")
    return 0 if all(r.passed for r in reports) else 1


def _export_golden(args) -> int:
    from dichotomy.refimpl import crosscheck

    steps = errors.positive_int("steps", args.steps)
    for name in args.model:
        print("wrote " + ", ".join(map(str, crosscheck.write_golden(args.out, name, steps))))
    return 0


def _presets() -> int:
    for name, p in presets.PRESETS.items():
        print(f"{name:12s} {p.model:18s} {p.steps:>11,d} steps  {p.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dichotomy`` console command."""
    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "bench": _bench, "validate": _validate,
                "crosscheck": _crosscheck, "export-golden": _export_golden,
                "presets": lambda _: _presets()}[args.command](args)
    except (errors.DichotomyError, BackendUnavailable) as e:
        print(f"dichotomy: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
