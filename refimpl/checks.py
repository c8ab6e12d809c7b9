"""Every input check of the package, each raising a one-line :class:`~dichotomy.errors.ConfigError`.

Bad input becomes an error that names the argument and says what to do, instead of a traceback from deep
inside NumPy or a silent NaN later on. Numbers (:func:`positive`, :func:`step_count` ...), arrays
(:func:`finite_array`), parameter dicts (:func:`check_params`), a model's arguments (:func:`check_call`,
:func:`model_params`, :func:`examples`) and the limits' inputs (:func:`model_data`) are checked here and nowhere
else (sklearn's ``utils/validation.py``).
"""

from __future__ import annotations

import math
import numbers
from types import ModuleType

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import losses

MAX_STEPS = 10**15  # a longer run would take decades at a nanosecond per step; larger counts overflow int64 maths


def positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` after checking it is a finite number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool | np.bool_):
        raise errors.ConfigError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise errors.ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return x


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """Return ``int(value)`` after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise errors.ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def step_count(name: str, value, *, minimum: int = 0) -> int:
    """Return ``int(value)`` after checking it is an integer in [``minimum``, :data:`MAX_STEPS`]."""
    n = positive_int(name, value, minimum=minimum)
    if n > MAX_STEPS:
        raise errors.ConfigError(f"{name}={n} is more than {MAX_STEPS:.0e} steps, which no run can take; give fewer")
    return n


def fraction(name: str, value) -> float:
    """Return ``float(value)`` after checking it lies in the open interval (0, 1)."""
    x = positive(name, value)
    if not x < 1:
        raise errors.ConfigError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return x


def finite_array(name: str, a, *, ndim: int | None = None, real: bool = False) -> np.ndarray:
    """Return ``np.asarray(a)`` after checking it is numeric, finite and (optionally) ``ndim``-dimensional.

    With ``real`` the array must be real: complex dtypes are refused.

    Parameters
    ----------
    name : str
        The argument's name, for the messages.
    a : array_like, any shape
        ``ndim`` dimensions when ``ndim`` is given.
    ndim : int, optional
    real : bool

    Returns
    -------
    ndarray, shape of ``a``
        ``np.asarray(a)``, its dtype unchanged.
    """
    a = np.asarray(a)
    if a.dtype.kind not in ("biuf" if real else "biufc"):
        kind = "real" if real else "numeric"
        raise errors.ConfigError(f"{name} must be a {kind} array, got dtype {a.dtype}"
                          + ("; complex inputs are not supported" if a.dtype.kind == "c" else ""))
    if ndim is not None and a.ndim != ndim:
        raise errors.ConfigError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise errors.ConfigError(f"{name} contains {bad} NaN or inf entries; clean the data before training")
    return a


def check_params(name: str, shapes: dict[str, tuple[int, ...]], params, *, what: str = "params",
                 keep_dtype: bool = False) -> dict[str, np.ndarray]:
    """Float64 copies of ``params`` after checking them against ``shapes`` (model ``name``'s ``shapes(config)``).

    The checks: the same keys, the same shapes, real numbers, all finite. ``what`` names the dict in the messages
    (``params``, or ``tangent`` for a params-shaped direction).

    With ``keep_dtype`` (the model functions' checks, :func:`check_call`) float and complex arrays are returned as
    they are, so a float32 or a complex-step evaluation computes in its own dtype; integers still become float64
    (an int8 u**L would wrap around silently).

    Parameters
    ----------
    name : str
        The model's ``NAME``, for the messages.
    shapes : dict of str to tuple of int
        Each parameter's shape.
    params : dict of str to array_like
        One array per key of ``shapes``, of that shape.
    what : str
    keep_dtype : bool

    Returns
    -------
    dict of str to ndarray
        Keyed and shaped as ``shapes``: float64 copies, or with ``keep_dtype`` float and complex arrays as given.
    """
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
    """The checks a model's public functions (predict, loss_and_grad, jvp, ntk_features) make before any math.

    ``config`` is the module's Config, ``params`` (and ``tangent``) match ``shapes(config)`` (:func:`check_params`),
    X passes the module's ``check_inputs``. Float and complex params keep their dtype (complex-step derivatives
    go through these functions). ``forward`` and ``backward`` skip these checks: they are the engine's per-step
    path on checked state.

    Parameters
    ----------
    module : model module
        One of :data:`refimpl.models.MODELS`.
    config : module.Config
    params : dict of str to array_like
        One array per key of ``module.shapes(config)``, of that shape.
    X : array_like, shape (n, ...)
        The model's inputs: feature rows (n, d) or (n, D), or index pairs (n, 2).
    tangent : dict of str to array_like, optional
        A direction shaped like ``params``.

    Returns
    -------
    params : dict of str to ndarray
        Shaped as ``module.shapes(config)``; float and complex dtypes kept, integers as float64.
    X : ndarray, shape (n, ...)
        As returned by ``module.check_inputs``.
    tangent : dict of str to ndarray
        Only with a tangent: ``(params, X)`` is returned without one, ``(params, X, tangent)`` with one.
    """
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
    """A Config's real-valued field: a finite int or float > 0 (>= 0 with ``allow_zero``).

    A string or None is refused here; bools are refused by :func:`positive`.
    """
    if not isinstance(value, numbers.Real):
        raise errors.ConfigError(f"{name} must be a number, got {value!r}")
    return positive(name, value, allow_zero=allow_zero)


def config_flag(name: str, value) -> bool:
    """A Config's on/off field: exactly True or False (a string such as "false" would count as True)."""
    if not isinstance(value, bool | np.bool_):
        raise errors.ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def model_params(module: ModuleType, config, params) -> dict[str, np.ndarray]:
    """Float64 copies of ``params`` after checking them against the model's ``shapes(config)``.

    The checks: the same keys, the same shapes, real numbers, all finite (:func:`check_params`). Every engine is
    given parameters checked here, once.

    Parameters
    ----------
    module : model module
    config : module.Config
    params : dict of str to array_like
        One array per key of ``module.shapes(config)``, of that shape.

    Returns
    -------
    dict of str to ndarray
        Float64 copies, keyed and shaped as ``module.shapes(config)``.
    """
    return check_params(module.NAME, module.shapes(config), params)


def examples(module: ModuleType, config, params: dict[str, np.ndarray], X, y, loss: str, *,
                   empty: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) after checking X by the model's ``check_inputs`` and y against ``loss`` and the model's outputs.

    The outputs are (n,) or (n, out) (:func:`refimpl.losses.check_targets`), for ``params`` already checked by
    :func:`check_params`. X with no rows is a ConfigError saying ``empty``.

    Parameters
    ----------
    module : model module
    config : module.Config
    params : dict of str to ndarray
        Checked parameters, shaped as ``module.shapes(config)``.
    X : array_like, shape (n, ...)
        The model's inputs, n >= 1.
    y : array_like, shape (n,) or (n, out)
        Targets of ``loss``.
    loss : str
    empty : str

    Returns
    -------
    X : ndarray, shape (n, ...)
    y : ndarray, shape (n,) or (n, out)
    """
    X = module.check_inputs(config, X)
    if X.shape[0] == 0:
        raise errors.ConfigError(empty)
    with np.errstate(over="ignore", invalid="ignore"):  # one row, for the output shape only: its values may overflow
        f_shape = (X.shape[0],) + np.shape(module.forward(config, params, X[:1])[0])[1:]
    return X, losses.check_targets(loss, f_shape, y)


def model_data(module: ModuleType, config, params, X, y, loss: str,
               ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(params as float64 copies, X, y) after checking them for ``module``.

    params are checked against ``shapes(config)`` (:func:`model_params`), X by the model's ``check_inputs`` with
    at least one row, y against ``loss`` and the model's outputs (n,) or (n, out) (:func:`examples`).

    Parameters
    ----------
    module : model module
    config : module.Config
    params : dict of str to array_like
        One array per key of ``module.shapes(config)``, of that shape.
    X : array_like, shape (n, ...)
        The model's inputs, n >= 1.
    y : array_like, shape (n,) or (n, out)
        Targets of ``loss``.
    loss : str

    Returns
    -------
    params : dict of str to ndarray
        Float64 copies, shaped as ``module.shapes(config)``.
    X : ndarray, shape (n, ...)
    y : ndarray, shape (n,) or (n, out)
    """
    params = model_params(module, config, params)
    X, y = examples(module, config, params, X, y, loss,
                                 empty="X has no rows: the limits need at least one training example")
    return params, X, y
