"""The model families by name. Each is a module exporting the same functions (docs/user-guide.md):

``Config`` (frozen dataclass), ``init(config, rng)``, ``check_inputs(config, X)``, ``forward``,
``predict(config, params, X)``, ``backward(config, params, cache, g)``,
``loss_and_grad(config, params, X, y, loss)``, ``jvp(config, params, X, tangent)`` (forward-mode
derivative of the outputs along a params-shaped tangent) and ``ntk_features(config, params, X)``;

and its facts (docs/architecture.md): ``NAME`` (its one name), ``degree(config)`` (homogeneity degree),
``init_scale(config)`` and ``SCALE_CONVENTION`` (alpha in theta(0) = alpha theta_bar), ``n_outputs(config)``,
``config_for(data, **model_args)`` (dimensions from the dataset), ``late_limit(config, task)`` (which convex
late limit applies, or None), ``ntk_gram(config, params, X1, X2)`` and ``check_params(config, params)``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp
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
    the same shapes, real numbers, all finite. Every engine is given parameters checked here, once."""
    if not isinstance(params, dict):
        raise ConfigError(f"params must be a dict of arrays, got {type(params).__name__}")
    want = module.shapes(config)
    if set(params) != set(want):
        missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
        raise ConfigError(f"{module.NAME} params must have exactly the keys {', '.join(want)}"
                          + (f"; missing {', '.join(missing)}" if missing else "")
                          + (f"; unexpected {', '.join(map(str, extra))}" if extra else ""))
    out = {}
    for k, shape in want.items():
        p = np.asarray(params[k])
        if p.dtype.kind not in "iuf":
            raise ConfigError(f"params[{k!r}] must hold real numbers, got dtype {p.dtype}")
        if p.shape != shape:
            raise ConfigError(f"params[{k!r}] has shape {p.shape}, but {module.NAME} with this config needs {shape}")
        if not np.all(np.isfinite(p)):
            raise ConfigError(f"params[{k!r}] contains NaN or inf")
        out[k] = np.array(p, dtype=np.float64)
    return out


def degree(module: ModuleType, config) -> int:
    """The homogeneity degree L of the model: f(c theta) = c^L f(theta) (the model's own ``degree``)."""
    return module.degree(config)
