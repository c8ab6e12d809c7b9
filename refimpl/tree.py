"""Helpers over parameter dicts ``dict[str, ndarray]`` (the package's one parameter format), and the argument
checks every model module shares (docs/user-guide.md, "The model interface")."""

from __future__ import annotations

import numbers

import numpy as np

from dichotomy.refimpl import errors


def flatten(params: dict[str, np.ndarray]) -> np.ndarray:
    """Concatenate every array, raveled in C order, in the dict's key order; shape (P,)."""
    return np.concatenate([np.ravel(p) for p in params.values()])


def unflatten(vec: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`flatten`: split ``vec`` (P,) into arrays shaped like ``like``'s."""
    out, start = {}, 0
    for k, p in like.items():
        out[k] = np.reshape(vec[start:start + p.size], p.shape)
        start += p.size
    return out


def param_norm(params: dict[str, np.ndarray]) -> float:
    """The L2 norm of all parameters together, ||theta||_2."""
    return float(np.sqrt(sum(np.vdot(p, p).real for p in params.values())))


def all_finite(params: dict[str, np.ndarray]) -> bool:
    """True when no parameter holds a NaN or inf."""
    return all(np.all(np.isfinite(p)) for p in params.values())


def check_params(name: str, shapes: dict[str, tuple[int, ...]], params, *, what: str = "params",
                 keep_dtype: bool = False) -> dict[str, np.ndarray]:
    """Float64 copies of ``params`` after checking them against ``shapes`` (model ``name``'s ``shapes(config)``):
    the same keys, the same shapes, real numbers, all finite. ``what`` names the dict in the messages
    (``params``, or ``tangent`` for a params-shaped direction).

    With ``keep_dtype`` (the model functions' checks, :func:`check_call`) float and complex arrays are returned as
    they are, so a float32 or a complex-step evaluation computes in its own dtype; integers still become float64
    (an int8 u**L would wrap around silently)."""
    if not isinstance(params, dict):
        raise errors.ConfigError(f"{what} must be a dict of arrays, got {type(params).__name__}")
    if set(params) != set(shapes):
        missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes), key=str)
        raise errors.ConfigError(f"{name} {what} must have exactly the keys {', '.join(shapes)}"
                                 + (f"; missing {', '.join(missing)}" if missing else "")
                                 + (f"; unexpected {', '.join(map(str, extra))}" if extra else ""))
    out = {}
    for k, shape in shapes.items():
        p = np.asarray(params[k])
        if p.dtype.kind not in ("iufc" if keep_dtype else "iuf"):
            kind = "numbers" if keep_dtype else "real numbers"
            raise errors.ConfigError(f"{what}[{k!r}] must hold {kind}, got dtype {p.dtype}")
        if p.shape != shape:
            raise errors.ConfigError(f"{what}[{k!r}] has shape {p.shape}, but {name} with this config needs {shape}")
        if not np.all(np.isfinite(p)):
            raise errors.ConfigError(f"{what}[{k!r}] contains NaN or inf")
        out[k] = p if keep_dtype and p.dtype.kind in "fc" else np.array(p, dtype=np.float64)
    return out


def check_call(module, config, params, X, tangent=None):
    """The checks a model's public functions (predict, loss_and_grad, jvp, ntk_features) make before any math:
    ``config`` is the module's Config, ``params`` (and ``tangent``) match ``shapes(config)`` (:func:`check_params`),
    X passes the module's ``check_inputs``. Float and complex params keep their dtype (complex-step derivatives
    go through these functions). Returns ``(params, X)``, or ``(params, X, tangent)`` with a tangent.
    ``forward`` and ``backward`` skip these checks: they are the engine's per-step path on checked state."""
    check_config(module, config)
    shapes = module.shapes(config)
    params = check_params(module.NAME, shapes, params, keep_dtype=True)
    X = module.check_inputs(config, X)
    if tangent is None:
        return params, X
    return params, X, check_params(module.NAME, shapes, tangent, what="tangent", keep_dtype=True)


def check_config(module, config) -> None:
    """``config`` must be an instance of the model module's own ``Config``."""
    if not isinstance(config, module.Config):
        raise errors.ConfigError(f"config must be a {module.NAME} Config, got {type(config).__name__}: pass "
                                 f"{module.Config.__module__}.Config(...)")


def config_number(name: str, value, *, allow_zero: bool = False) -> float:
    """A Config's real-valued field: an int or float (not a string or None; bools are refused by
    :func:`refimpl.errors.positive`), finite, > 0 (>= 0 with ``allow_zero``)."""
    if not isinstance(value, numbers.Real):
        raise errors.ConfigError(f"{name} must be a number, got {value!r}")
    return errors.positive(name, value, allow_zero=allow_zero)


def config_flag(name: str, value) -> bool:
    """A Config's on/off field: exactly True or False (a string such as "false" would count as True)."""
    if not isinstance(value, bool | np.bool_):
        raise errors.ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)
