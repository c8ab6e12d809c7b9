"""dichotomy phase: the switch time of every cell of a sweep, and the phase diagram."""

from __future__ import annotations

from dichotomy.cli.common import EXIT_OK, path_arg
from dichotomy.experiments import phase as phase_module
from dichotomy.refimpl import checks
from dichotomy.store import files

NAME = "phase"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    ph = command("phase", "the switch time of every cell of a sweep against ln α / (ηλ), and a phase diagram",
                 "Read the sweep store DIR/sweep.nc; for every cell measure the switch of the test metric (mean over "
                 "seeds with its uncertainty) and its class (grokking, misgrokking, no switch), fit it against "
                 "t* = ln α / (ηλ), ln α and 1/λ; write DIR/phase.json and DIR/phase.png (docs/sweeps.md).")
    ph.add_argument("dir", type=path_arg, metavar="DIR", help="the folder dichotomy sweep --out wrote")
    ph.add_argument("--metric", default=None, help="the metric whose switch is measured (default test_acc, or "
                    "test_loss for regression)")
    ph.add_argument("--min-change", type=float, default=phase_module.MIN_CHANGE,
                    help="the least move of the metric that counts as a switch (a move of at least this much counts): "
                         "absolute for accuracies, for losses relative to the larger of |plateau| and |final| "
                         f"(default {phase_module.MIN_CHANGE})")


def run(args) -> int:
    min_change = checks.positive("--min-change", args.min_change)
    store = phase_module.load(args.dir)  # a one-line error before anything is written
    with files.locked(args.dir, "dichotomy phase"):
        result, paths = phase_module.write(args.dir, args.metric, min_change, store=store)
    print(phase_module.summary(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK
