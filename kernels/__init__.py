"""Backends: the same training math, fast. ``get_backend(name).run(...)`` has refimpl.train.run's contract.

``numpy`` is the float64 reference itself (refimpl.train.run); ``numba`` is the compiled CPU backend
(kernels/numba/, with an extra ``dtype="float32"`` option); ``cupy`` is the GPU backend (kernels/cupy/, same
contract, needs CuPy and a CUDA device). Asking for a backend that cannot run here raises
:class:`BackendUnavailable` with the reason; nothing ever falls back to another backend silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dichotomy.refimpl.errors import DichotomyError

BACKENDS = ("numpy", "numba", "cupy")


class BackendUnavailable(DichotomyError, RuntimeError):
    """The requested backend cannot run on this machine or is not built yet; the message says why."""


@dataclass(frozen=True)
class Backend:
    """A named training engine: ``run(model, config, params, data, *, lr, wd, steps, record, ...)``."""

    name: str
    run: Callable


def get_backend(name: str) -> Backend:
    """The backend called ``name``, or :class:`BackendUnavailable` saying why it cannot run."""
    if name == "numpy":
        from dichotomy.refimpl.train import run

        return Backend("numpy", run)
    if name == "numba":
        try:
            from dichotomy.kernels.numba import run
        except ImportError as e:
            raise BackendUnavailable(f"the numba backend needs numba: {e}") from None
        return Backend("numba", run)
    if name == "cupy":
        from dichotomy.kernels import cupy as gpu

        reason = gpu.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"the cupy backend cannot run here: {reason}; use --backend numba")
        return Backend("cupy", gpu.run)
    raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def available_backends() -> list[str]:
    """Names of the backends that can run here."""
    out = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailable:
            continue
        out.append(name)
    return out
