"""The one signal policy: SIGINT and SIGTERM from the first instant of a command to its last (docs/user-guide.md).

:func:`install` sets the handlers before anything slow runs (the command installs them before it imports
NumPy, SciPy or Numba). From then on a signal is honoured in one of three ways:

- **at once**, as :class:`KeyboardInterrupt` (SIGINT) or :class:`Terminated` (SIGTERM), where Python code of
  ours or of a pure-Python library is running: start-up, data generation, solvers, between claims;
- **at the next safe point**, inside a :func:`deferred` block (a training chunk, a file being written): the
  handler only notes the signal, and the block's owner stops where its state is consistent
  (:func:`pending`, :func:`take`), or the outermost block raises it at its end;
- **after foreign code returns**, while Numba or llvmlite is compiling: an exception raised inside their
  ctypes callbacks is discarded by ctypes ("Exception ignored on calling ctypes callback function"), so the
  handler notes the signal and :func:`check` raises it at the next safe point (the command's imports done, the
  driver's next chunk, the next claim, the next sweep task, the end of the command). The same holds inside
  importlib's module-lock weakref callback, which a signal during the start-up imports can land in.

A second signal while one is noted stops at once (:class:`Forced`), except inside foreign code, where nothing
can be raised. Handlers can only be set in the main thread; elsewhere nothing is installed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
FOREIGN = ("numba.", "llvmlite.")  # modules whose frames may sit under a ctypes callback
# (module, function) of callbacks whose exceptions Python prints and drops: importlib's module-lock weakref callback
SWALLOWING = {("importlib._bootstrap", "cb")}


class Interrupted(KeyboardInterrupt):
    """A signal honoured outside a training loop; ``signal_name`` and ``exit_code`` (130 or 143) say which."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = EXIT_CODES[signal_name]


class Terminated(Interrupted):
    """SIGTERM, honoured: exit code 143."""

    def __init__(self, signal_name: str = "SIGTERM"):
        super().__init__(signal_name)


class Forced(Interrupted):
    """A second SIGINT/SIGTERM while the first was still waiting for a safe point: raised at once."""


class _State:
    def __init__(self):
        self.pending: str | None = None  # the first signal noted and not yet honoured
        self.depth = 0                   # nesting of deferred() blocks
        self.holds = 0                   # of those, blocks that must finish (a file being written)
        self.installed: dict = {}        # signum -> the handler in force before install()
        self.delivered: list[str] = []   # every signal delivered since install(), in order


_state = _State()


def _interrupt(name: str) -> Interrupted:
    return Terminated() if name == "SIGTERM" else Interrupted(name)


def _in_foreign_code(frame) -> bool:
    """Whether the interrupted stack runs Numba or llvmlite code (a compilation, maybe a ctypes callback)."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(FOREIGN):
            return True
        frame = frame.f_back
    return False


def _swallowed_here(frame) -> bool:
    """Whether the interrupted frame is a callback that would print and drop an exception (:data:`SWALLOWING`)."""
    return frame is not None and (frame.f_globals.get("__name__"), frame.f_code.co_name) in SWALLOWING


def _handler(signum, frame) -> None:
    name = NAMES[signum]
    _state.delivered.append(name)
    if _in_foreign_code(frame) or _swallowed_here(frame):
        _state.pending = _state.pending or name  # raising here would be swallowed: honour it when they return
        return
    if _state.depth > 0:
        if _state.pending is not None and _state.holds == 0:
            raise Forced(take())  # asked twice: stop now (but never inside a file being written)
        _state.pending = name
        return
    _state.pending = None
    raise _interrupt(name)


def install() -> bool:
    """Set the policy's handlers for SIGINT and SIGTERM (main thread only); True if this call set them.

    A command calls it first of all; :func:`uninstall` puts back the handlers in force before (pytest's, when a
    test calls the command in-process).
    """
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        return False
    for signum in NAMES:
        current = signal.getsignal(signum)
        if current is None or current is signal.SIG_IGN:  # set from C, or ignored on purpose (a nohup'd job)
            continue
        _state.installed[signum] = current
        signal.signal(signum, _handler)
    _state.delivered = []
    return bool(_state.installed)


def is_installed() -> bool:
    """Whether the policy's handlers are in force (set by :func:`install`, not yet put back)."""
    return bool(_state.installed)


def uninstall() -> None:
    """Put back the handlers that were in force before :func:`install`, and forget a pending signal."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in _state.installed.items():
        signal.signal(signum, previous)
    _state.installed.clear()
    _state.pending = None


def delivered() -> list[str]:
    """The signals delivered since :func:`install`, in order (a caller's Ctrl-C is told from a simulated one)."""
    return list(_state.delivered)


def pending() -> str | None:
    """The signal noted and not yet honoured ("SIGINT", "SIGTERM"), or None."""
    return _state.pending


def take() -> str | None:
    """The pending signal, now honoured by the caller (who stops in its own way), or None."""
    name, _state.pending = _state.pending, None
    return name


def check() -> None:
    """A safe point: raise the pending signal, if any, as :class:`Interrupted` or :class:`Terminated`."""
    name = take()
    if name is not None:
        raise _interrupt(name)


@contextmanager
def deferred(*, hold: bool = False) -> Iterator[None]:
    """Signals in the block are noted, not raised; the outermost block honours a pending one at its end.

    The block's owner may stop earlier, where its state is consistent (:func:`pending`, :func:`take`). With
    ``hold`` (a file being written) not even a second signal breaks the block off. Where the policy is not
    installed (a library call, not a command), the block installs it for its duration and at its end raises a
    pending signal again for the handlers in force before, as if it had come then.
    """
    if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread only
        yield
        return
    _state.depth += 1  # first: a signal from here on is noted, never raised half-way into the block
    _state.holds += hold
    fresh = install()
    name = None
    try:
        yield
        name = take() if _state.depth == 1 else None  # the outermost block ended normally: honour a pending one
    finally:
        if fresh:
            uninstall()  # before the depth falls: a signal after this goes to the handlers before
        _state.depth -= 1
        _state.holds -= hold
    if name is None:
        return
    if fresh:
        signal.raise_signal(signal.SIGTERM if name == "SIGTERM" else signal.SIGINT)
    else:
        raise _interrupt(name)
