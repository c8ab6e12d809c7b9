"""A backend's engine registry: one engine class per model name, with what each supports.

The only place a backend chooses code by model: ``ModelEngines(backend, {model NAME: engine class})``. Each
engine class declares ``DTYPES`` (working precisions), ``SCHEDULES`` ("constant", "loss-normalized") and may
refine the check with ``unsupported_data(config, data) -> str | None`` (data kinds it does not take). Engine
options a user may pin (the numba engines' ``threads``, the diagonal net's ``layout``) are bound with
:meth:`ModelEngines.with_options` and passed to every engine made; each class lists those it takes in ``OPTIONS``.
"""

from __future__ import annotations

import numpy as np


class ModelEngines:
    """Callable like an engine class (the :class:`dichotomy.refimpl.engine.Engine` protocol's constructor)."""

    def __init__(self, name: str, engines: dict[str, type], options: dict | None = None):
        self.name, self.engines = name, engines
        self.options = {k: v for k, v in (options or {}).items() if v is not None}

    def with_options(self, **options) -> ModelEngines:
        """These engines, each made with ``options`` (None values are left out: the engine chooses)."""
        return ModelEngines(self.name, self.engines, {**self.options, **options})

    def unsupported(self, model, runs, data, dtype, schedule) -> str | None:
        engine = self.engines.get(model.NAME)
        if engine is None:
            return f"it has no {model.NAME} engine (it has: {', '.join(self.engines)})"
        for option in self.options:
            if option not in getattr(engine, "OPTIONS", ()):
                takes = ", ".join(getattr(engine, "OPTIONS", ())) or "none"
                return f"its {model.NAME} engine takes no {option} option (it takes: {takes})"
        if dtype not in engine.DTYPES:
            return f"its {model.NAME} engine computes in {' or '.join(engine.DTYPES)}, not {dtype}"
        kind = "constant" if schedule is None else "loss-normalized"
        if kind not in engine.SCHEDULES:
            return f"its {model.NAME} engine has no {kind} learning-rate schedule; use --backend numpy"
        for split in ("X_train", "X_test"):
            if np.asarray(getattr(data, split)).dtype.kind == "c":
                return "complex inputs are not supported"
        for run in runs:
            reason = engine.unsupported_data(run.config, data)
            if reason is not None:
                return reason
        return None

    def __call__(self, model, runs, data, *, probe=None, dtype="float64", schedule=None):
        return self.engines[model.NAME](model, runs, data, probe=probe, dtype=dtype, schedule=schedule,
                                        **self.options)
