"""A backend's engine registry: one engine class per model name, with what each supports.

The only place a backend chooses code by model: ``ModelEngines(backend, {model NAME: engine class})``. Each
engine class declares ``DTYPES`` (working precisions), ``SCHEDULES`` ("constant", "loss-normalized") and may
refine the check with ``unsupported_data(config, data) -> str | None`` (data kinds it does not take). Engine
options a user may pin (the numba engines' ``threads``, the diagonal net's ``layout``) are bound with
:meth:`ModelEngines.with_options` and passed to every engine made; each class lists those it takes in ``OPTIONS``.
"""

from __future__ import annotations

import numpy as np

from dichotomy.refimpl.steppers import Flow


class _NoFlow:
    """The flow engine of a model whose backend integrates no flow: :meth:`ModelEngines.unsupported` says so."""

    SCHEDULES: tuple = ()
    DTYPES = ("float64",)
    OPTIONS = ("threads", "layout")


class ModelEngines:
    """Callable like an engine class (the :class:`dichotomy.refimpl.engine.Engine` protocol's constructor)."""

    def __init__(self, name: str, engines: dict[str, type], options: dict | None = None,
                 flow: dict[str, type] | None = None):
        self.name, self.engines, self.flow = name, engines, flow or {}
        self.options = {k: v for k, v in (options or {}).items() if v is not None}

    def with_options(self, **options) -> ModelEngines:
        """These engines, each made with ``options`` (None values are left out: the engine chooses)."""
        return ModelEngines(self.name, self.engines, {**self.options, **options}, self.flow)

    def flow_engine(self) -> ModelEngines:
        """The backend's gradient-flow engines (:class:`dichotomy.refimpl.steppers.Flow`), with the same options."""
        missing = {k: _NoFlow for k in self.engines if k not in self.flow}
        return ModelEngines(self.name, {**missing, **self.flow}, self.options)

    def unsupported(self, model, runs, data, dtype, schedule) -> str | None:
        if isinstance(schedule, Flow) and self.flow:  # asked of the GD registry: its flow registry answers
            return self.flow_engine().unsupported(model, runs, data, dtype, schedule)
        engine = self.engines.get(model.NAME)
        if engine is None:
            return f"it has no {model.NAME} engine (it has: {', '.join(self.engines)})"
        for option in self.options:
            if option not in getattr(engine, "OPTIONS", ()):
                takes = ", ".join(getattr(engine, "OPTIONS", ())) or "none"
                return f"its {model.NAME} engine takes no {option} option (it takes: {takes})"
        if dtype not in engine.DTYPES:
            return f"its {model.NAME} engine computes in {' or '.join(engine.DTYPES)}, not {dtype}"
        kind = ("constant" if schedule is None else "loss-normalized" if not isinstance(schedule, Flow)
                else "loss-normalized flow" if schedule.loss_normalized else "flow")
        if kind not in engine.SCHEDULES:
            if kind == "loss-normalized flow":
                return "it integrates no loss-normalized flow; use --backend numpy"
            if kind == "flow":
                return (f"it integrates no gradient flow of the {model.NAME}; use --backend numpy (docs/math.md §7: "
                        "for a ReLU net GD is the better tool)")
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
