"""dichotomy export-golden: small reference trajectories per model, readable without this package."""

from __future__ import annotations

from dichotomy.cli.common import EXIT_OK, choices, count, one_of, path_arg, writable_dir
from dichotomy.refimpl import checks
from dichotomy.refimpl.models import MODELS
from dichotomy.store import files

NAME = "export-golden"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    golden = command("export-golden", "write small reference trajectories (npz and json) per model",
                     "Write a small reference trajectory per model (OUT/MODEL.npz and OUT/MODEL.json), readable "
                     "without this package, to test another implementation against.")
    golden.add_argument("--out", required=True, type=path_arg, help="output directory (created if missing)")
    golden.add_argument("--model", nargs="+", default=list(MODELS), **one_of("model", MODELS), metavar="MODEL",
                        help=f"models to export (default: all of {choices(MODELS)})")
    golden.add_argument("--steps", type=count, default=20, help="steps per trajectory (default 20)")


def run(args) -> int:
    from dichotomy.peers import crosscheck

    steps = checks.step_count("steps", args.steps, minimum=1)
    writable_dir(args.out)
    with files.locked(args.out, "dichotomy export-golden"):
        for name in args.model:
            print("wrote " + ", ".join(map(str, crosscheck.write_golden(args.out, name, steps))))
    return EXIT_OK
