"""Kernel variants chosen by a short timed trial on this host, cached per host and problem size.

Where the fastest variant differs between host kinds (the diagonal net's bit tables against int8 column
blocks; the BLAS thread count of the ReLU MLP and of the numpy backend, :mod:`dichotomy.kernels.blas`), an engine
calls :func:`choose` at its first step: the first time a (host, size) pair is seen, every candidate runs a few
steps and the fastest is kept in the cache file (:func:`cache_path`); later engines read it. Variants that
round differently are fixed for the life of a run and saved in its checkpoint, so a resumed run ends bit for bit
where it would have. A user pins a variant (``get_backend("numba", layout="blocks")``, ``--layout``), and
``dichotomy bench`` reports the choices.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dichotomy.errors import StorageError
from dichotomy.kernels.cores import available_cores
from dichotomy.store import files

log = logging.getLogger(__name__)

CACHE_FILE = "kernels.json"
_warned: set[str] = set()  # cache files already reported unwritable, once per process


def cache_path(environ=os.environ) -> Path:
    """``$DICHOTOMY_CACHE_DIR/kernels.json``, else under ``$XDG_CACHE_HOME/dichotomy`` or ``~/.cache/dichotomy``."""
    if environ.get("DICHOTOMY_CACHE_DIR"):
        return Path(environ["DICHOTOMY_CACHE_DIR"]) / CACHE_FILE
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "dichotomy" / CACHE_FILE


def host() -> dict:
    """The CPU this runs on: model name, the widest vector ISA it offers, logical and available cores."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    isa = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"),
                                          ("sse4_2", "SSE4.2"), ("asimd", "NEON")) if flag in flags), "unknown")
    return {"cpu": name, "isa": isa, "cores": os.cpu_count(), "available_cores": available_cores()}


def host_key() -> str:
    """What a cached choice is valid for: the CPU, its ISA, the cores available, NumPy's and Numba's versions."""
    import numba

    h = host()
    return (f"{h['cpu']} | {h['isa']} | {h['available_cores']} cores | numpy {np.__version__} | "
            f"numba {numba.__version__}")


def _read(path: Path) -> dict:
    try:
        doc = files.read_json(path)
    except (OSError, ValueError):
        doc = None
    return doc if isinstance(doc, dict) else {}


def cached(kind: str, size: str, path: Path | None = None):
    """The cached choice for (this host, ``kind``, ``size``), or None."""
    entry = _read(path or cache_path()).get(host_key(), {}).get(f"{kind} {size}")
    return entry.get("choice") if isinstance(entry, dict) else None


def choose(kind: str, size: str, candidates: Sequence, trial: Callable[[object], float],
           path: Path | None = None, margin: float = 1.0):
    """The fastest candidate by ``trial(candidate)`` (seconds per step) on this host, cached.

    ``size`` names the problem (shapes, batch, dtype); a cached choice that is no longer a candidate is timed
    again. Candidates are in order of preference: a later one is chosen only when it takes at most ``margin``
    times the time of the best before it. An unwritable cache is reported once as a warning and the choice is
    still made (timed each time).
    """
    path = path or cache_path()
    choice = cached(kind, size, path)
    if choice in candidates:
        return choice
    seconds = {str(c): trial(c) for c in candidates}
    choice = candidates[0]
    for c in candidates[1:]:
        if seconds[str(c)] <= margin * seconds[str(choice)]:
            choice = c
    log.info("kernel choice %s %s: %s (%s)", kind, size, choice,
             ", ".join(f"{c} {1e3 * s:.3g} ms/step" for c, s in seconds.items()))
    doc = _read(path)
    doc.setdefault(host_key(), {})[f"{kind} {size}"] = {"choice": choice, "ms_per_step": {
        c: 1e3 * s for c, s in seconds.items()}, "date": time.strftime("%Y-%m-%d")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json(path, doc)
    except (OSError, StorageError) as e:
        if str(path) not in _warned:
            _warned.add(str(path))
            log.warning("kernel choices are not cached (%s); set DICHOTOMY_CACHE_DIR to a writable folder", e)
    return choice


def time_per_step(advance: Callable[[int], None], budget: float = 0.02, most: int = 64) -> float:
    """Seconds per step of ``advance(k)``, from the fastest of three calls of k steps.

    One warm-up step, then k doubled until a call lasts ``budget``, then the fastest of three calls of k steps (a lone
    call of a slow step would time a pool waking up, or a neighbour).
    """
    advance(1)
    k = 1
    while True:
        start = time.perf_counter()
        advance(k)
        elapsed = time.perf_counter() - start
        if elapsed >= budget or k >= most:
            break
        k *= 2
    for _ in range(2):
        start = time.perf_counter()
        advance(k)
        elapsed = min(elapsed, time.perf_counter() - start)
    return elapsed / k
