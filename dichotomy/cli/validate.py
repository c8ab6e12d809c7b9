"""dichotomy validate: the paper's claims, checked, into report.md and report.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dichotomy import errors
from dichotomy.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    add_checkpoint_options,
    add_flow_options,
    add_thread_options,
    backend_of,
    choices,
    flow_of,
    one_of,
    path_arg,
    writable_dir,
    writable_file,
)
from dichotomy.kernels import BACKENDS
from dichotomy.store import files
from dichotomy.validation import suite

NAME = "validate"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    val = command("validate", "reproduce the paper's claims and write report.md and report.json",
                  "Run each claim of the paper (and four claims of follow-up work), check its predictions against "
                  "the measurements, and write "
                  "OUT/report.md and OUT/report.json. Claims already computed in OUT with the same config are "
                  "reused, so an interrupted run resumes where it stopped.")
    scale = val.add_mutually_exclusive_group()
    scale.add_argument("--quick", dest="scale", action="store_const", const="quick",
                       help="CPU scale, the whole suite in about 7.5 minutes on 2 cores (440 s measured, idle; the "
                            "default)")
    scale.add_argument("--paper", dest="scale", action="store_const", const="paper",
                       help="the paper's exact configurations (hours to days on a CPU: the projected time and memory "
                            "of each claim are shown first, and a long run is asked about; --yes skips asking)")
    scale.add_argument("--scale", dest="scale", **one_of("scale", suite.SCALES), help=argparse.SUPPRESS)
    val.set_defaults(scale="quick")
    val.add_argument("--backend", default="numba", **one_of("backend", BACKENDS),
                     help="training backend (default numba)")
    add_thread_options(val)
    add_flow_options(val, "each claim's run (fig1a, fig1b, fig3), and check it against GD over a prefix")
    val.add_argument("--only", nargs="+", metavar="CLAIM", **one_of("claim", suite.CLAIMS),
                     help=f"run only these claims (default: all): {choices(suite.CLAIMS)}")
    val.add_argument("--out", type=path_arg, default=None, help="output directory (default runs/validate, "
                     "runs/validate-flow with --flow); claims already there with the same config are reused")
    val.add_argument("--force", action="store_true", help="recompute claims even if saved results match (their "
                     "checkpoints are discarded too)")
    add_checkpoint_options(val, "each run of a claim")
    val.add_argument("--reuse-other-version", action="store_true",
                     help="reuse saved claims written by another version of the package (the report says so); "
                          "by default they are recomputed")
    val.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    val.add_argument("--docs", type=path_arg, default=None,
                     help="also write the report and its figures into this markdown file (docs/validation.md), "
                          "between its validate markers")
    val.add_argument("--yes", action="store_true",
                     help="with --paper: start without asking, whatever the projected time (for scripts)")


def _go_ahead(names: list[str], yes: bool, flow: bool = False) -> bool:
    """Show the paper scale's projected time and memory; ask before a long (or unprojected) run unless ``yes``."""
    table, hours = suite.paper_cost(names, flow)
    print(f"The paper's scale, projected on 2 cores:\n{table}", file=sys.stderr)
    if yes or (hours is not None and hours <= suite.ASK_ABOVE_HOURS):
        return True
    total = "an unprojected time" if hours is None else f"about {hours:.1f} CPU-hours"
    if not sys.stdin.isatty():
        raise errors.ConfigError(f"this would take {total}: add --yes to start it without a terminal to ask on "
                                 "(or narrow it with --only)")
    try:
        answer = input(f"This takes {total}. Start? [y/N] ").strip().lower()
    except EOFError:  # Ctrl-D: no
        answer = ""
    if answer not in ("y", "yes"):
        print("dichotomy: nothing started", file=sys.stderr)
        return False
    return True


def run(args) -> int:
    names = suite.select(args.only)
    backend = backend_of(args)
    stepper = flow_of(args)
    flow = {"rtol": stepper.rtol} if stepper else None
    if args.out is None:
        args.out = Path("runs/validate-flow" if flow else "runs/validate")
    if flow:
        for name in names:  # before anything runs: every claim asked for has a flow version
            suite.claim_config(name, args.scale, backend.name, flow)
    if args.docs is not None:
        suite.check_docs(args.docs, args.scale, flow is not None)
        writable_file(args.docs, "--docs")
    if args.scale == "paper" and not _go_ahead(names, args.yes, flow is not None):
        return EXIT_OK  # declined: nothing started, nothing wrong
    writable_dir(args.out)
    try:
        with files.locked(args.out, "dichotomy validate"):
            reports = suite.run(names, args.scale, backend, args.out, progress=not args.no_progress,
                                force=args.force, checkpoint_every=args.checkpoint_every,
                                reuse_other_version=args.reuse_other_version, flow=flow)
    except KeyboardInterrupt as stop:
        report = args.out / "report.md"
        kept = (f"the claims finished so far are in {report}" if report.is_file()
                else "no claim had finished, so there is no report yet")
        print(f"dichotomy: interrupted ({getattr(stop, 'signal_name', 'SIGINT')}); {kept}, and a rerun resumes "
              "from the first unfinished one", file=sys.stderr)
        return getattr(stop, "exit_code", EXIT_SIGINT)
    if args.docs is not None:
        suite.write_docs(reports, args.scale, backend.name, args.docs, flow is not None)
    failed = [r.name for r in reports if not r.passed]
    print(f"{len(reports) - len(failed)} of {len(reports)} claims pass"
          + (f" (failed: {', '.join(failed)})" if failed else "") + f"; report: {args.out / 'report.md'}")
    return EXIT_FAILED if failed else EXIT_OK
