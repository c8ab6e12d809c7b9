"""The command line proper: the parser (one subparser per command module) and the error policy.

:func:`dichotomy.cli.main` imports this module only after the signal policy is in force, so a signal during
these imports (NumPy, SciPy, Numba) is honoured like any other.
"""

from __future__ import annotations

import logging
import sys

from dichotomy import errors, signals
from dichotomy.cli import bench, crosscheck, gd_flow, golden, phase, predict, presets, sweep, train, validate
from dichotomy.cli.common import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_debug,
    argparse,
    created,
    one_line,
    remove_created,
)

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Reproduce and explore the early/late implicit-bias dichotomy (Lyu et al., ICLR 2024): validate the "
    "paper's claims, train a named experiment, benchmark the engines, crosscheck PyTorch or JAX against the "
    "float64 reference, export golden trajectories. Exit codes: 0 success; 1 training diverged or a check "
    "failed; 2 bad input; 3 internal error; 130 interrupted (SIGINT); 143 terminated (SIGTERM).")



# One module per command, in the order of ``dichotomy --help``.
MODULES = (train, presets, crosscheck, golden, validate, sweep, phase, bench, gd_flow, predict)
COMMANDS = {m.NAME: m.run for m in MODULES}


def _parser() -> argparse.ArgumentParser:
    """The command line: the global options and one subparser per command module."""
    parser = Parser(prog="dichotomy", description=DESCRIPTION)
    add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="the command to run",
                                title="commands (dichotomy COMMAND --help for each one's options)")

    def command(name: str, summary: str, description: str):
        p = sub.add_parser(name, help=summary, description=description)
        add_debug(p, argparse.SUPPRESS)  # --debug after the command too; SUPPRESS keeps the global value
        return p

    for module in MODULES:
        module.add(command)
    return parser


class _Format(logging.Formatter):
    """Plain messages; warnings and errors say so."""

    def format(self, record):
        msg = super().format(record)
        if record.levelno >= logging.WARNING and not msg.startswith("dichotomy:"):
            msg = f"dichotomy: {record.levelname.lower()}: {msg}"
        return msg


def _error(text: str) -> None:
    print(f"dichotomy: error: {one_line(text)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command and return its exit code (see DESCRIPTION); the signal policy is in force."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        given = sys.argv[1:] if argv is None else list(map(str, argv))
        hint = ("; --grid takes NAME=V1,V2,... with the values joined by commas, no spaces (--grid alpha=64,128)"
                if "unrecognized arguments" in str(e) and any(a.startswith("--grid") for a in given) else "")
        _error(f"{e}{hint}")
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format("%(message)s"))
    package = logging.getLogger("dichotomy")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    created.clear()
    code = EXIT_INTERNAL
    try:
        code = COMMANDS[args.command](args)
        signals.check()  # a signal noted while Numba compiled, with no safe point after it: honoured now
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
        _error(f"out of memory{f' ({one_line(e)})' if str(e) else ''}: this machine cannot hold what was asked "
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
        what = ": ".join(filter(None, (type(e).__name__, one_line(e))))
        print(f"dichotomy: internal error: {what} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if code != EXIT_OK:
            remove_created()
        package.removeHandler(handler)
        package.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
