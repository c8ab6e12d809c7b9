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

``predict``, ``loss_and_grad``, ``jvp`` and ``ntk_features`` check their arguments (:func:`refimpl.tree.check_call`);
``forward`` and ``backward`` do not: they are the engine's per-step path, on state checked once by
:func:`refimpl.train.check_run` (params by :func:`check_params` here).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from dichotomy.refimpl import diagonal_net, losses, matrix_factorization, relu_mlp, tree
from dichotomy.refimpl.errors import ConfigError

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


def check_params(module: ModuleType, config, params) -> dict[str, np.ndarray]:
    """Float64 copies of ``params`` after checking them against the model's ``shapes(config)``: the same keys,
    the same shapes, real numbers, all finite (:func:`refimpl.tree.check_params`). Every engine is given
    parameters checked here, once."""
    return tree.check_params(module.NAME, module.shapes(config), params)


def check_examples(module: ModuleType, config, params: dict[str, np.ndarray], X, y, loss: str, *,
                   empty: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) after checking X by the model's ``check_inputs`` and y against ``loss`` and the model's outputs (n,)
    or (n, out) (:func:`refimpl.losses.check_targets`), for ``params`` already checked by :func:`check_params`.
    X with no rows is a ConfigError saying ``empty``."""
    X = module.check_inputs(config, X)
    if X.shape[0] == 0:
        raise ConfigError(empty)
    with np.errstate(over="ignore", invalid="ignore"):  # one row, for the output shape only: its values may overflow
        f_shape = (X.shape[0],) + np.shape(module.forward(config, params, X[:1])[0])[1:]
    return X, losses.check_targets(loss, f_shape, y)


def degree(module: ModuleType, config) -> int:
    """The homogeneity degree L of the model: f(c theta) = c^L f(theta) (the model's own ``degree``)."""
    return module.degree(config)
