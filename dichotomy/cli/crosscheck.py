"""dichotomy crosscheck: a PyTorch or JAX implementation against the float64 reference."""

from __future__ import annotations

from dichotomy.cli.common import EXIT_FAILED, EXIT_OK, choices, count, one_of, path_arg, writable_file
from dichotomy.peers.adapters import ADAPTERS, MISTAKES
from dichotomy.refimpl import checks
from dichotomy.refimpl.models import MODELS
from dichotomy.store import files

NAME = "crosscheck"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    cross = command("crosscheck", "compare the built-in PyTorch or JAX implementation with the reference",
                    "Train a small standard problem per model with the PyTorch or JAX implementation and compare "
                    "its outputs, gradients and trajectory with the float64 reference. Needs the peers extra.")
    cross.add_argument("--framework", required=True, **one_of("framework", ADAPTERS), help="the framework to check")
    cross.add_argument("--model", nargs="+", default=list(MODELS), **one_of("model", MODELS), metavar="MODEL",
                       help=f"models to check (default: all of {choices(MODELS)})")
    cross.add_argument("--steps", type=count, default=100, help="trajectory length compared (default 100)")
    cross.add_argument("--rtol", type=float, default=1e-10, help="relative tolerance (default 1e-10)")
    cross.add_argument("--mistake", **one_of("mistake", MISTAKES), default=None,
                       help="build the adapter with this deliberate slip, to see it caught (docs/crosscheck.md)")
    cross.add_argument("--json", type=path_arg, default=None, help="also write the reports to this JSON file")


def run(args) -> int:
    from dichotomy.peers import crosscheck
    from dichotomy.peers.adapters import adapter

    steps = checks.step_count("steps", args.steps, minimum=1)
    rtol = checks.positive("rtol", args.rtol)
    if args.json is not None:
        writable_file(args.json, "--json")
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
