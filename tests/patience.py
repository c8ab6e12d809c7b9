"""How long a test waits for a subprocess: its budget on an idle machine, stretched by the machine's load.

A fixed 300 s timeout failed on a loaded machine where nothing was wrong. A test's wait is its idle budget times
the load per core (never less than 1), times ``DICHOTOMY_TEST_PATIENCE`` (default 1) for slower machines still.
"""

import os


def patience(seconds: float) -> float:
    """``seconds`` on an idle machine, stretched by the current load per core and DICHOTOMY_TEST_PATIENCE."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] / cores if hasattr(os, "getloadavg") else 1.0
    return seconds * max(1.0, load) * float(os.environ.get("DICHOTOMY_TEST_PATIENCE", "1"))
