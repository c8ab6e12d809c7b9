"""The cores this process may use, and how a pool of workers shares them (docs/user-guide.md, "Threads").

Never the machine's core count: the process's CPU affinity mask, capped by its cgroup's CPU quota (v2
``cpu.max``, v1 ``cpu.cfs_quota_us``) rounded up. A pool of workers splits them so that workers x threads per
worker never exceeds them; each worker then sets Numba's thread count and every BLAS library's
(:func:`limit_process`). Imports nothing heavy: the command line sizes its pools before any engine loads.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from dichotomy.errors import ConfigError

log = logging.getLogger(__name__)

CGROUP = Path("/sys/fs/cgroup")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """The CPUs this process's cgroup may use (quota / period), or None when unlimited or unknown."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores(root: Path = CGROUP) -> int:
    """The cores this process may run on: its affinity mask, capped by its cgroup's CPU quota (rounded up)."""
    cores = _affinity()
    quota = cgroup_quota(root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Each worker's share of the available cores (at least 1), or ``threads`` if given.

    ``workers`` x that may not exceed them (a ConfigError when ``threads`` was asked for, a warning when the workers
    alone do).
    """
    have = available_cores()
    share = threads or max(1, have // workers)
    if workers * share > have:
        if threads is not None:
            raise ConfigError(f"{workers} workers x {threads} threads is more than the {have} cores this process may "
                              f"use; lower --workers or --threads")
        log.warning("%d workers on %d cores: each runs one thread, and they share the cores", workers, have)
    return share


def limit_process(threads: int) -> None:
    """This process's engines use at most ``threads`` threads: Numba's count, and every BLAS library's."""
    import numba
    from threadpoolctl import threadpool_limits

    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
