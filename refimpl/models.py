"""The model families by name, and the protocol every model module keeps (docs/architecture.md).

A model is a module. :class:`Model` lists what it exports: the math (``Config``, ``init``, ``forward``,
``backward``, ``predict``, ``loss_and_grad``, ``jvp``, ``ntk_features``, ``ntk_gram``), the facts the rest of the
package asks of it (``NAME``, ``INPUTS``, ``SCALE_CONVENTION``, ``degree``, ``init_scale``, ``n_outputs``,
``shapes``, ``config_for``, ``late_limit``) and the plain-data facts of its standard problems (``QUICK_PRESET``,
``STANDARD_LOSS``, ``SMALL_PROBLEM``, ``bench_problem``, ``step_work``). :data:`MODELS` registers them, and
:func:`missing` names what a module lacks (tests/test_interface.py runs it on every entry).

``predict``, ``loss_and_grad``, ``jvp`` and ``ntk_features`` check their arguments (:func:`refimpl.checks.check_call`);
``forward`` and ``backward`` do not: they are the engine's per-step path, on state checked once by
:func:`dichotomy.run.driver.check_run` (params by :func:`refimpl.checks.model_params`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp


@runtime_checkable
class Model(Protocol):
    """What every model module exports; ``isinstance(module, Model)`` checks that each name is there."""

    NAME: str               # its one name: registry key, CLI argument, trajectory field
    INPUTS: str             # "features" (rows of X) or "index-pairs" (matrix entries (i, j))
    SCALE_CONVENTION: str   # what alpha means in theta(0) = alpha theta_bar
    QUICK_PRESET: str       # the preset `dichotomy train MODEL` runs by default
    STANDARD_LOSS: str      # the loss of its standard problems
    SMALL_PROBLEM: dict     # {"dataset", "data", "model", "lr", "wd"}: crosscheck and golden files
    Config: type            # a frozen dataclass, checked in __post_init__

    def init(self, config, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]: ...
    def check_inputs(self, config, X) -> np.ndarray: ...
    def forward(self, config, params, X) -> tuple[np.ndarray, Any]: ...
    def backward(self, config, params, cache, g) -> dict[str, np.ndarray]: ...
    def predict(self, config, params, X) -> np.ndarray: ...
    def loss_and_grad(self, config, params, X, y, loss: str) -> tuple[float, dict[str, np.ndarray]]: ...
    def jvp(self, config, params, X, tangent) -> np.ndarray: ...
    def ntk_features(self, config, params, X) -> np.ndarray: ...
    def ntk_gram(self, config, params, X1, X2) -> np.ndarray: ...
    def shapes(self, config) -> dict[str, tuple[int, ...]]: ...
    def degree(self, config) -> int: ...
    def init_scale(self, config) -> float: ...
    def n_outputs(self, config) -> int: ...
    def config_for(self, data, **model_args): ...
    def late_limit(self, config, task: str) -> str | None: ...
    def bench_problem(self, size: dict) -> tuple[str, dict, dict]: ...
    def step_work(self, config, n: int) -> tuple[int, int]: ...


def missing(module: ModuleType) -> list[str]:
    """The names of :class:`Model` that ``module`` does not export (empty for a complete model)."""
    names = [n for n in Model.__annotations__] + [n for n in vars(Model) if not n.startswith("_")
                                                   and callable(vars(Model)[n])]
    return sorted(n for n in set(names) if not hasattr(module, n))


# A fourth model is its own module (keeping the protocol above) and one entry in this tuple.
MODELS: dict[str, ModuleType] = {m.NAME: m for m in (diagonal_net, matrix_factorization, relu_mlp)}
def get(name: str) -> ModuleType:
    """The model module registered under ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def resolve(model: ModuleType | str) -> ModuleType:
    """A model module given itself or its name; anything else is a one-line ConfigError."""
    if isinstance(model, str):
        return get(model)
    if getattr(model, "NAME", None) in MODELS and MODELS[model.NAME] is model:
        return model
    raise ConfigError(f"{model!r} is not a model; pass one of {', '.join(MODELS)} or its module")


def degree(module: ModuleType, config) -> int:
    """The homogeneity degree L of the model: f(c theta) = c^L f(theta) (the model's own ``degree``)."""
    return module.degree(config)
