"""What every command shares: exit codes, argument types, common options and the checks made before any compute."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from dichotomy import errors
from dichotomy.kernels import get_backend
from dichotomy.refimpl import checks
from dichotomy.refimpl.steppers import Flow
from dichotomy.run.checkpoint import DEFAULT_EVERY, Checkpoints
from dichotomy.store import files

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 3, 130, 143

OPS = ("+", "-", "*", "/")  # the operations of data.modular_arithmetic

class UsageError(Exception):
    """A command-line parsing error, reported as one line (argparse's own format prints the usage too)."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse calls this and expects it not to return
        raise UsageError(f"{message} (see {self.prog} --help)")


def path_arg(text: str) -> Path:
    """A path argument; an empty one (which Path would read as the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a folder or file name")
    return Path(text)


def count(text: str) -> int:
    """A whole number written as the paper writes it: ``100000``, ``100_000`` or ``1e5`` (not ``1.5e0``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"a whole number (100000, 100_000 or 1e5), got {text!r}")
    return int(value)


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seeds are integers >= 0, got {text!r}")
    return value


def flag01(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1 (or false / true), got {text!r}")


def choices(names) -> str:
    return ", ".join(names)


def one_of(what: str, names) -> dict:
    """add_argument keywords for a closed set: choices, and a type that names the set in its error.

    The choices serve --help and introspection; the type's error reads "unknown engine 'x'; choose from ..." and is
    checked before argparse's own choices test.
    """
    names = tuple(names)

    def check(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose from {choices(names)}")
        return text

    check.__name__ = what
    return {"type": check, "choices": names}


def add_debug(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, raise it with its full traceback instead of a one-line message")


def interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds >= 0 (0 turns checkpoints off), got {text!r}")
    return value


def add_checkpoint_options(parser, what: str, restart: str | None = None, restart_help: str = "") -> None:
    parser.add_argument("--checkpoint-every", type=interval, default=None, metavar="SECONDS",
                        help=f"checkpoint {what} every SECONDS (default {DEFAULT_EVERY:g}, stretched so that "
                             "checkpoints cost under 1%% of the time; 0 turns them off); a rerun of the same command "
                             "resumes from the last one, bit for bit")
    if restart:
        parser.add_argument(restart, action="store_true", help=restart_help)


def add_thread_options(parser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="numba backend: run on exactly N threads (default: 1 or all available cores, "
                             "whichever measures faster; docs/user-guide.md, 'Threads')")
    parser.add_argument("--layout", default=None, choices=("bits", "blocks"),
                        help="numba backend, diagonal net on +-1 data: hold X as bits or int8 column blocks "
                             "(default: the faster on this host, timed once and cached)")


def add_flow_options(parser, what: str = "the run") -> None:
    parser.add_argument("--flow", action="store_true",
                        help=f"integrate {what} as the gradient flow d theta/dt = -(grad L + wd theta) to the "
                             "time lr x steps, recorded at the times lr x step, instead of taking GD steps "
                             "(docs/math.md §7)")
    parser.add_argument("--rtol", type=float, default=None, metavar="R",
                        help="with --flow: the integrator's local error tolerance, relative to ||theta|| "
                             "(default 1e-6)")


def flow_of(args) -> Flow | None:
    """--flow and --rtol, checked: the Flow stepper, or None for GD."""
    if not args.flow:
        if args.rtol is not None:
            raise errors.ConfigError("--rtol sets the gradient flow's tolerance: add --flow")
        return None
    return Flow() if args.rtol is None else Flow(rtol=args.rtol)


def threads_of(args) -> int | None:
    """--threads, checked (None: the engines choose)."""
    return None if args.threads is None else checks.positive_int("--threads", args.threads)


def backend_of(args):
    """The --backend, with the numba engines' --threads and --layout when given."""
    return get_backend(args.backend, threads=threads_of(args), layout=args.layout)


# --- checks made before any compute ----------------------------------------------------------------------

created: list[Path] = []  # directories this command created; removed again if it fails and they are empty


def writable_dir(path: Path, label: str = "--out directory") -> Path:
    """Create ``path`` if needed and prove it writable (write and delete a probe file), or a ConfigError."""
    if path.exists() and not path.is_dir():
        raise errors.ConfigError(f"{label} {path} is a file, not a directory")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise errors.ConfigError(f"cannot create {label} {path}: {e.strerror or e}") from None
    created.extend(missing)  # deepest first
    probe = path / f".dichotomy-write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise errors.ConfigError(f"cannot write into {label} {path}: {e.strerror or e}") from None
    return path


def writable_file(path: Path, option: str) -> Path:
    """Prove the file ``path`` can be written (its folder is created), without changing it, or a ConfigError."""
    if path.is_dir():
        raise errors.ConfigError(f"{option} {path} is a directory; give a file name")
    writable_dir(path.parent, f"the folder of {option}")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise errors.ConfigError(f"cannot write {option} file {path}: {e.strerror or e}") from None
    return path


def remove_created() -> None:
    """After a failure, remove the directories this command created that are still empty."""
    for path in created:
        try:
            if [p.name for p in path.iterdir()] == [files.LOCK_NAME]:
                files.remove_lock(path)  # only when no other process holds it
            path.rmdir()
        except OSError:
            pass
    created.clear()


def checkpoints_of(args, folder: Path, **kwargs) -> Checkpoints | None:
    """The --checkpoint-every policy for runs checkpointing into ``folder`` (None when turned off)."""
    every = args.checkpoint_every
    return None if every == 0 else Checkpoints(folder, every=every, **kwargs)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


