"""The model families by CLI name. Each is a module exporting the same functions (docs/user-guide.md):

``Config`` (frozen dataclass), ``init(config, rng)``, ``check_inputs(config, X)``, ``forward``,
``predict(config, params, X)``, ``backward(config, params, cache, g)``,
``loss_and_grad(config, params, X, y, loss)``, ``jvp(config, params, X, tangent)`` (forward-mode
derivative of the outputs along a params-shaped tangent) and ``ntk_features(config, params, X)``.
"""

from __future__ import annotations

from types import ModuleType

from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp
from dichotomy.refimpl.errors import ConfigError

MODELS: dict[str, ModuleType] = {
    "diagonal-net": diagonal_net,
    "matrix-completion": matrix_factorization,
    "relu-mlp": relu_mlp,
}


def get(name: str) -> ModuleType:
    """The model module registered under ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def degree(module: ModuleType, config) -> int:
    """The homogeneity degree L of the model: f(c theta) = c^L f(theta)."""
    return 2 if module is matrix_factorization else config.L
