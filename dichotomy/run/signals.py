"""SIGINT and SIGTERM while training: deferred to the end of the driver's current chunk (docs/user-guide.md)."""

from __future__ import annotations

import signal
import threading


class Forced(KeyboardInterrupt):
    """A second SIGINT/SIGTERM while the driver was already stopping: raised at once, from the handler."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class Deferred:
    """SIGINT and SIGTERM deferred while training, for the driver to stop at the end of its current chunk.

    The handler notes the signal and the driver stops at the end of the current chunk (at most
    ~:data:`dichotomy.run.driver.CHUNK_SECONDS` later), where the engine's state is consistent and can be
    checkpointed. A second signal before that raises at once. A signal the driver did not act on (one that
    came during the final checkpoint, say) is raised again, for the handlers in force before, when the block
    ends. Main thread only (elsewhere signals cannot be set); in other threads nothing is installed."""

    NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}

    def __init__(self):
        self.caught: str | None = None
        self.handled = False
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.NAMES:
                self.previous[signum] = signal.signal(signum, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.caught is not None:  # asked twice: stop now, without the checkpoint
            raise Forced(self.NAMES[signum])
        self.caught = self.NAMES[signum]

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.caught and not self.handled and exc[0] is None:
            signal.raise_signal(signal.SIGTERM if self.caught == "SIGTERM" else signal.SIGINT)
        return False
