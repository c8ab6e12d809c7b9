"""The model families by name. Each is a module exporting the same functions (docs/user-guide.md):

``Config`` (frozen dataclass), ``init(config, rng)``, ``check_inputs(config, X)``, ``forward``,
``predict(config, params, X)``, ``backward(config, params, cache, g)``,
``loss_and_grad(config, params, X, y, loss)``, ``jvp(config, params, X, tangent)`` (forward-mode
derivative of the outputs along a params-shaped tangent) and ``ntk_features(config, params, X)``;

and its facts (docs/architecture.md): ``NAME`` (its one name), ``degree(config)`` (homogeneity degree),
``init_scale(config)`` and ``SCALE_CONVENTION`` (alpha in theta(0) = alpha theta_bar), ``n_outputs(config)``,
``config_for(data, **model_args)`` (dimensions from the dataset), ``late_limit(config, task)`` (which convex
late limit applies, or None), ``ntk_gram(config, params, X1, X2)`` and ``shapes(config)`` (parameter names and
shapes, checked by :func:`check_params`).

``predict``, ``loss_and_grad``, ``jvp`` and ``ntk_features`` check their arguments (:func:`refimpl.checks.check_call`);
``forward`` and ``backward`` do not: they are the engine's per-step path, on state checked once by
:func:`dichotomy.run.driver.check_run` (params by :func:`check_params` here).
"""

from __future__ import annotations

from types import ModuleType

from dichotomy.errors import ConfigError
from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp

# A fourth model is its own module (with the facts below) and one entry in this tuple.
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
