"""Backends: the same training math, fast, behind one engine protocol and one driver (docs/architecture.md).

``get_backend(name)`` returns a :class:`Backend` whose ``run`` / ``run_batch`` have the contract of
:func:`dichotomy.run.driver.run` / ``run_batch``: the one driver, with the backend's engine.

- ``numpy``: the float64 reference itself (:class:`dichotomy.refimpl.engine.ReferenceEngine`), its BLAS thread
  count fixed per run (:mod:`dichotomy.kernels.reference`).
- ``numba``: fused, compiled CPU training loops (``kernels/numba/``), float64 and float32, batches; the
  gradient flow of the diagonal net and matrix completion (``kernels/numba/flow.py``).
- ``cupy``: CUDA kernels (``kernels/cupy/``); needs CuPy and a CUDA device.

Every backend declares what it supports (models, dtypes, data kinds, the loss-normalized schedule, the flow); anything
else is a one-line error naming what was asked (:class:`BackendUnavailable` when the backend cannot run on this
machine at all, :class:`dichotomy.errors.ConfigError` for a combination it does not take). Nothing ever
falls back to another backend silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dichotomy.errors import ConfigError, DichotomyError
from dichotomy.refimpl.engine import Engine, RunSpec
from dichotomy.refimpl.steppers import LossNormalized
from dichotomy.run import driver
from dichotomy.run.checkpoint import Checkpoints

BACKENDS = ("numpy", "numba", "cupy")

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "Engine", "LossNormalized", "RunSpec", "available_backends",
           "get_backend"]


class BackendUnavailable(DichotomyError, RuntimeError):
    """The requested backend cannot run on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Backend:
    """A named engine factory, driven by the one driver.

    ``engine`` is called as ``engine(model, runs, data, probe=..., dtype=..., schedule=...)`` and offers
    ``unsupported(model, runs, data, dtype, schedule) -> str | None`` (the :class:`Engine` protocol).
    ``checkpoints`` (default none) is where every run it trains checkpoints and resumes from, unless a call
    passes its own (:meth:`checkpointed` binds one: ``dichotomy validate`` hands each claim such a backend).
    """

    name: str
    engine: object
    checkpoints: Checkpoints | None = None

    def run(self, model, config, params, data, **kwargs):
        """:func:`dichotomy.run.driver.run` on this backend's engine."""
        kwargs.setdefault("checkpoints", self.checkpoints)
        return driver.run(model, config, params, data, engine=self.engine, **kwargs)

    def run_batch(self, model, configs, params, data, **kwargs):
        """:func:`dichotomy.run.driver.run_batch` on this backend's engine: B runs, one engine."""
        kwargs.setdefault("checkpoints", self.checkpoints)
        return driver.run_batch(model, configs, params, data, engine=self.engine, **kwargs)

    def checkpointed(self, checkpoints: Checkpoints | None) -> Backend:
        """This backend, its runs checkpointing into ``checkpoints`` (None: not at all)."""
        return dataclasses.replace(self, checkpoints=checkpoints)

    def unsupported(self, model, runs, data, dtype: str = "float64", schedule=None) -> str | None:
        """Why this backend cannot train ``runs`` of ``model`` on ``data``; None if it can."""
        return self.engine.unsupported(model, runs, data, dtype, schedule)


def get_backend(name: str, *, threads: int | None = None, layout: str | None = None) -> Backend:
    """The backend called ``name``, or :class:`BackendUnavailable` saying why it cannot run.

    ``threads`` pins the numba engines' thread count (default: chosen by timing, docs/benchmarks.md) and
    ``layout`` the diagonal net's data layout for +-1 inputs (``"bits"`` or ``"blocks"``; default: the faster
    on this host). Other backends take neither: asking them is a :class:`ConfigError`.
    """
    options = {k: v for k, v in (("threads", threads), ("layout", layout)) if v is not None}
    if options and name != "numba":
        raise ConfigError(f"the {name} backend takes no {' or '.join(options)} option; they set the numba engines")
    if name == "numpy":
        from dichotomy.kernels.reference import NumpyEngine

        return Backend("numpy", NumpyEngine)
    if name == "numba":
        try:
            from dichotomy.kernels.numba import ENGINE
            from dichotomy.kernels.numba import threads as kthreads
            from dichotomy.kernels.numba.diagonal_net import check_layout
        except ImportError as e:
            raise BackendUnavailable(f"the numba backend needs numba: {e}") from None
        return Backend("numba", ENGINE.with_options(threads=kthreads.check_threads(threads),
                                                    layout=check_layout(layout)))
    if name == "cupy":
        from dichotomy.kernels import cupy as gpu

        reason = gpu.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"the cupy backend cannot run here: {reason}; use --backend numba")
        from dichotomy.kernels.cupy.engines import ENGINE

        return Backend("cupy", ENGINE)
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
