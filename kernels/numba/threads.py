"""The threading policy of the Numba engines: how many threads, where, and how they wait (docs/benchmarks.md).

Three rules, each measured (docs/benchmarks.md, "Engines on a busy machine"):

- **The cores this process may use**: :func:`dichotomy.kernels.cores.available_cores`, its CPU affinity mask
  capped by its cgroup's CPU quota, never the machine's core count.
- **A wait that yields**: GNU OpenMP's threads spin 300,000 times at each barrier before they sleep; on a busy
  machine a barrier then waits for a descheduled thread while the others burn its core. :func:`configure_openmp`
  sets ``GOMP_SPINCOUNT`` to :data:`SPINCOUNT` (a few microseconds of spinning, then a futex) before Numba starts
  its OpenMP pool, unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` themselves.
- **Threads chosen by timing, call by call**, :class:`Governor`: an engine whose results do not depend on the
  thread count (the diagonal net, matrix completion: fixed partial sums) runs each call at 1 thread or at all
  of them, whichever measured faster, and now and then tries the other (backing off while it keeps losing). A
  parallel region costs a barrier; on tiny work, or beside busy neighbours, one thread wins, and the governor
  sees it. The ReLU MLP's GEMMs round differently with OpenBLAS's thread count, so its count is fixed per run
  (:mod:`dichotomy.kernels.blas`).

``threads=N`` (``--threads N``) pins the count; Numba's own ceiling (``NUMBA_NUM_THREADS``,
``numba.set_num_threads``) is honoured as an upper bound, so a caller's setting is never exceeded.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from dichotomy.errors import ConfigError
from dichotomy.kernels.cores import available_cores

SPINCOUNT = "3000"  # ~2-5 us of spinning at a barrier before the thread sleeps (libgomp's default: 300000)


def configure_openmp(environ=os.environ) -> str | None:
    """Set ``GOMP_SPINCOUNT`` before Numba's OpenMP pool starts, unless the user chose a wait policy.

    libgomp reads its environment when it is loaded, which Numba does at its first parallel call; after that
    this changes nothing (docs/benchmarks.md). Returns the value in force, or None when the user set theirs.
    """
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return None
    environ["GOMP_SPINCOUNT"] = SPINCOUNT
    return SPINCOUNT


def ceiling() -> int:
    """The most threads an engine may use now: the available cores, within Numba's own current setting."""
    import numba

    return max(1, min(available_cores(), numba.get_num_threads()))


def check_threads(threads) -> int | None:
    """``threads`` as a positive int within Numba's pool, or None (choose automatically)."""
    if threads is None:
        return None
    import numba

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer (or None: automatic), got {threads!r}")
    most = numba.config.NUMBA_NUM_THREADS
    if threads > most:
        raise ConfigError(f"threads={threads} is more than Numba's pool ({most}, NUMBA_NUM_THREADS); "
                          f"ask for at most {most}")
    return threads


@contextmanager
def numba_threads(n: int):
    """Numba's thread count set to ``n`` for the block (thread-local in Numba), then put back."""
    import numba

    before = numba.get_num_threads()
    if n == before:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


class Governor:
    """Chooses 1 thread or ``most`` for each call by timing both, for kernels whose results do not depend on it.

    ``run(steps, call)`` calls ``call(k)`` (advance k steps) under the chosen count, possibly in two pieces: a
    short trial of the other count (about :data:`TRIAL` seconds at the current rate, at most a quarter of the
    call), then the rest. The first call at each count may compile and is not timed. A count that loses is
    tried again after :data:`RETRY` seconds, then twice as long after each further loss (up to
    :data:`PATIENCE`); one that wins by :data:`MARGIN` in two trials in a row takes over (one noisy sample on a
    busy machine does not), and a call twice as slow as the last one brings the next trial forward. With
    ``pinned`` (or one core) it only sets the count.
    """

    TRIAL, RETRY, PATIENCE, MARGIN = 0.02, 1.0, 30.0, 0.9  # a trial spans a few scheduler slices (~4 ms)

    def __init__(self, most: int, pinned: int | None = None, clock=time.perf_counter):
        self.options = (pinned,) if pinned is not None else ((1, most) if most > 1 else (1,))
        self.best = self.options[-1]
        self.rate: dict[int, float] = {}
        self.wait = {n: self.RETRY for n in self.options}
        self.due = {n: 0.0 for n in self.options}
        self.steps = {n: 0 for n in self.options}  # steps run at each count (reported by bench)
        self.clock, self.warm = clock, set()  # the counts whose code has run once (compiled)
        self.won = False  # the other count won its last trial, and must win the next one to take over

    def _timed(self, n: int, k: int, call) -> float:
        with numba_threads(n):
            start = self.clock()
            call(k)
            elapsed = self.clock() - start
        self.steps[n] += k
        return elapsed / k

    def run(self, steps: int, call) -> None:
        if len(self.options) == 1 or self.best not in self.warm:
            self._timed(self.best, steps, call)
            self.warm.add(self.best)
            return
        other = next(n for n in self.options if n != self.best)
        if other not in self.warm:  # its first call may compile its own code path: one step, not timed
            self._timed(other, 1, call)
            self.warm.add(other)
            steps -= 1
            if steps == 0:
                return
        known = self.rate.get(self.best)
        if steps < 2 or self.clock() < self.due[other]:
            self.rate[self.best] = rate = self._timed(self.best, steps, call)
            if known is not None and rate > 2 * known:  # the machine changed (neighbours came): look again now
                self.due[other] = 0.0
            return
        k = steps // 2 if known is None else max(1, min(steps // 4, int(self.TRIAL / max(known, 1e-9))))
        trial = self._timed(other, k, call)
        current = self._timed(self.best, steps - k, call)
        self.rate[other], self.rate[self.best] = trial, current
        if trial < self.MARGIN * current and not self.won:  # one win may be noise: confirm it at the next call
            self.won, self.due[other] = True, 0.0
            return
        self.won, won = False, trial < self.MARGIN * current
        if won:  # the other count takes over; the old one is tried again soon
            loser, self.best = self.best, other
            self.wait[loser] = self.RETRY
        else:
            loser = other
            self.wait[loser] = min(2 * self.wait[loser], self.PATIENCE)
        self.due[loser] = self.clock() + self.wait[loser]
