"""The dichotomy command: validate the paper's claims, train a preset, list presets, bench the engines,
crosscheck PyTorch/JAX against the reference, export golden reference trajectories.

Exit codes: 0 success; 1 training diverged or a claim / crosscheck failed; 2 bad input (a one-line
"dichotomy: error: ..." on stderr); 3 internal error (a bug: rerun with --debug for the traceback);
130 interrupted by SIGINT (Ctrl-C); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import sys

from dichotomy import signals


def main(argv: list[str] | None = None) -> int:
    """Entry point of the dichotomy command: the signal policy first, then everything else, imports included.

    A SIGINT or SIGTERM from the first instant on is honoured as documented: one line on stderr and exit code
    130 or 143 (docs/user-guide.md, "What survives what"). Called from Python with an ``argv`` (a test), the
    handlers in force before are put back at the end, and a Ctrl-C that reached the process is raised again as
    KeyboardInterrupt once the command has kept what it should: the caller's Ctrl-C (pytest's) is the caller's.
    """
    fresh, code = not signals.is_installed(), 3  # fresh: this call installs the policy, and puts back what was
    try:
        signals.install()
        try:
            from dichotomy.cli import app

            signals.check()  # the imports are done: a signal noted where it could not be raised stops here
        except Exception as e:  # a broken installation (a missing dependency): one line, not a traceback
            print(f"dichotomy: internal error: cannot load the command line: {type(e).__name__}: {e}; reinstall "
                  'with pip install "dichotomy-grokking"', file=sys.stderr)
        else:
            code = app.main(argv)
    except KeyboardInterrupt as e:  # the imports, parsing, or anywhere else outside a command's own handling
        print(f"dichotomy: interrupted ({getattr(e, 'signal_name', 'SIGINT')})", file=sys.stderr)
        code = getattr(e, "exit_code", 130)
    finally:
        ctrl_c = "SIGINT" in signals.delivered()
        if fresh:
            signals.uninstall()
    if argv is not None and fresh and ctrl_c:
        raise KeyboardInterrupt  # after the command stopped cleanly: now the caller's to handle
    return code


def _parser():
    """The command line's parser (:func:`dichotomy.cli.app._parser`)."""
    from dichotomy.cli import app

    return app._parser()


def __getattr__(name: str):
    """``dichotomy.cli.errors`` and the command modules, loaded on first use (the package itself stays light)."""
    if name == "errors":
        from dichotomy import errors

        return errors
    from importlib import import_module

    try:
        return import_module(f"dichotomy.cli.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module 'dichotomy.cli' has no attribute {name!r}") from None
