"""Losses, their derivatives, and the classification metrics, stable at huge margins (docs/math.md §1).

Every loss is a mean over samples, like PyTorch's default reduction:

========================  ======================================  =================================
name                      value                                   task
========================  ======================================  =================================
``logistic``              mean softplus(-y f)                     binary, y in {-1, +1}
``exponential``           mean exp(-y f)                          binary
``squared``               mean (f - y)^2   (no 1/2: nn.MSELoss)   regression
``cross_entropy``         mean logsumexp(F_i) - F_{i, y_i}        multiclass, y in {0..C-1}
========================  ======================================  =================================

``value_and_grad`` returns the loss and dL/df (already divided by n). ``log_value`` returns log L computed
in log space, finite where L itself underflows to 0 (margins of 1e4 and beyond: the late phase lives there).
The exponential loss overflows float64 for margins below about -709; it then returns ``inf`` without a
warning and the training driver reports the divergence.
"""

from __future__ import annotations

import numpy as np

from dichotomy.errors import ConfigError

TASKS = {"logistic": "binary", "exponential": "binary", "squared": "regression",
         "cross_entropy": "multiclass"}


LOG_SOFTPLUS_SWITCH = -20.0  # below it softplus(z) = e^z (1 - e^z / 2 + O(e^2z)): log softplus in closed form


def _special():
    """scipy.special, imported on the first loss evaluated (0.15 s that ``dichotomy --help`` does not pay)."""
    from scipy import special

    return special


def task_of(loss: str) -> str:
    """The task (``binary``, ``multiclass`` or ``regression``) a loss name belongs to."""
    try:
        return TASKS[loss]
    except (KeyError, TypeError):  # TypeError: an unhashable loss such as a list
        raise ConfigError(f"unknown loss {loss!r}; choose one of {sorted(TASKS)}") from None


def check_targets(loss: str, f_shape: tuple, y) -> np.ndarray:
    """Check that targets ``y`` suit ``loss`` and outputs of shape ``f_shape``; return them as an array.

    Parameters
    ----------
    loss : str
        One of ``logistic``, ``exponential``, ``squared``, ``cross_entropy``.
    f_shape : tuple of int
        The outputs' shape, (n,) or (n, C).
    y : array_like, shape (n,) or ``f_shape``
        Labels in {-1, +1} (binary), class labels in [0, C) (multiclass) or finite real targets (regression).

    Returns
    -------
    ndarray, shape (n,) or ``f_shape``
        ``np.asarray(y)``.
    """
    y = np.asarray(y)
    task = task_of(loss)
    n = f_shape[0]
    if y.shape[:1] != (n,):
        raise ConfigError(f"{n} outputs but {y.shape[0] if y.ndim else 0} targets: their lengths must match")
    one_output = len(f_shape) == 1 or (len(f_shape) == 2 and f_shape[1] == 1)
    if task != "multiclass" and not one_output and not (task == "regression" and y.shape == tuple(f_shape)):
        raise ConfigError(f"the {loss} loss needs one output per sample, but the model gives {f_shape[1]}: "
                          "use out=1 (or cross_entropy for several classes)")
    if task == "binary":
        if y.ndim != 1 or y.dtype.kind not in "biuf" or not np.all((y == 1) | (y == -1)):
            raise ConfigError(f"the {loss} loss needs labels in {{-1, +1}}; got values {np.unique(y)[:5]}")
    elif task == "multiclass":
        if one_output:
            raise ConfigError("cross_entropy needs at least 2 outputs (one per class), but the model has 1: use the "
                              "logistic loss with labels -1, +1 for two classes, or a model with out >= 2")
        C = f_shape[1]
        if y.dtype.kind not in "iu" or y.ndim != 1 or np.any((y < 0) | (y >= C)):
            raise ConfigError(f"cross_entropy needs integer class labels in [0, {C}) for {C} outputs")
    elif (y.shape != tuple(f_shape) and not (one_output and y.shape == (n,))) or y.dtype.kind not in "biuf":
        raise ConfigError(f"squared loss needs real targets of shape {tuple(f_shape)}, got {y.shape} {y.dtype}")
    elif not np.all(np.isfinite(y)):
        raise ConfigError(f"squared loss needs finite targets; {int(y.size - np.count_nonzero(np.isfinite(y)))} are "
                          "NaN or inf: clean them first")
    return y


def _one_column(f: np.ndarray, y) -> np.ndarray:
    """Outputs (n, 1) of a one-output model (a ReLU MLP with out = 1) against targets (n,): their column (n,).

    Taking the column means y * f never broadcasts to (n, n). Anything else is returned as it is.
    """
    f = np.asarray(f)
    if f.ndim == 2 and f.shape[1] == 1 and np.ndim(y) == 1:
        return f[:, 0]
    return f


def log_softplus(xp, z):
    """log(log(1 + e^z)) elementwise, accurate far below 0 where softplus(z) underflows.

    Parameters
    ----------
    xp : module
        The array module of ``z`` (numpy or cupy).
    z : array, any shape

    Returns
    -------
    array, shape of ``z``
    """
    low = z < LOG_SOFTPLUS_SWITCH
    zl = xp.where(low, z, LOG_SOFTPLUS_SWITCH)  # each branch evaluated only where it is taken
    zh = xp.where(low, 0.0, z)
    return xp.where(low, zl + xp.log1p(-0.5 * xp.exp(zl)), xp.log(xp.logaddexp(0.0, zh)))


def others_minus_true(xp, F, y):
    """F_ic - F_{i,y_i} for every c != y_i, shape (n, C - 1)."""
    n, C = F.shape
    rows = xp.arange(n)
    gaps = F - F[rows, y][:, None]
    mask = xp.ones((n, C), dtype=bool)
    mask[rows, y] = False
    return gaps[mask].reshape(n, C - 1)


def value_and_grad(loss: str, f: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean loss and its derivative with respect to the outputs.

    Parameters
    ----------
    loss : str
        One of ``logistic``, ``exponential``, ``squared``, ``cross_entropy``.
    f : ndarray, shape (n,) or (n, C)
        Model outputs (logits for ``cross_entropy``).
    y : ndarray, shape (n,) or like ``f``
        Targets.

    Returns
    -------
    value : float
    g : ndarray, shape of ``f``
        dL/df, including the 1/n of the mean. Finite at any finite margin.
    """
    shape, f = np.shape(f), _one_column(f, y)
    if f.shape != shape:
        value, g = value_and_grad(loss, f, y)
        return value, g.reshape(shape)
    n = f.shape[0]
    if loss == "logistic":
        m = y * f
        return float(np.mean(np.logaddexp(0.0, -m))), -y * _special().expit(-m) / n
    if loss == "exponential":
        with np.errstate(over="ignore"):
            e = np.exp(-y * f)
        return float(np.mean(e)), -y * e / n
    if loss == "squared":
        r = f - y
        return np.mean(r * r), 2.0 * r / r.size
    if loss == "cross_entropy":
        # One pass of shifted exponentials gives both logsumexp and softmax (scipy.special's versions
        # cost ~0.4 ms per call in dispatch, more than a small model's whole step).
        shifted = f - np.max(f, axis=1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        value = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
        g = e / total
        g[rows, y] -= 1.0
        return value, g / n
    raise ConfigError(f"unknown loss {loss!r}; choose one of {sorted(TASKS)}")


def log_value(loss: str, f: np.ndarray, y: np.ndarray) -> float:
    """log of the mean loss, computed in log space (finite where the loss underflows to 0).

    Parameters
    ----------
    loss : str
        One of ``logistic``, ``exponential``, ``squared``, ``cross_entropy``.
    f : ndarray, shape (n,) or (n, C)
        Model outputs (logits for ``cross_entropy``).
    y : ndarray, shape (n,) or like ``f``
        Targets.

    Returns
    -------
    float
    """
    f = _one_column(f, y)
    n = f.shape[0]
    if loss == "logistic":
        per_sample = log_softplus(np, -y * f)
    elif loss == "exponential":
        per_sample = -y * f
    elif loss == "cross_entropy":
        per_sample = log_softplus(np, _special().logsumexp(others_minus_true(np, f, y), axis=1))
    elif loss == "squared":
        with np.errstate(divide="ignore"):
            return float(np.log(np.mean((f - y) ** 2)))
    else:
        raise ConfigError(f"unknown loss {loss!r}; choose one of {sorted(TASKS)}")
    return float(_special().logsumexp(per_sample) - np.log(n))


def margins(task: str, f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample margins: y_i f_i (binary) or F_{i,y_i} - max_{j != y_i} F_ij (multiclass), shape (n,).

    Parameters
    ----------
    task : str
        ``binary`` or ``multiclass``.
    f : ndarray, shape (n,) or (n, C)
        Outputs (binary; (n, 1) is taken as (n,)) or logits F (multiclass).
    y : ndarray, shape (n,)
        Labels in {-1, +1} (binary) or class labels in [0, C) (multiclass).

    Returns
    -------
    ndarray, shape (n,)
    """
    if task == "binary":
        return y * _one_column(f, y)
    if task == "multiclass":
        return -np.max(others_minus_true(np, f, y), axis=1)
    raise ConfigError(f"margins are defined for classification, not {task}")


def accuracy(task: str, f: np.ndarray, y: np.ndarray) -> float:
    """Fraction correct. Binary ties (f = 0) count 1/2, as in the official code; multiclass uses argmax.

    Parameters
    ----------
    task : str
        ``binary`` or ``multiclass``.
    f : ndarray, shape (n,) or (n, C)
        Outputs (binary; (n, 1) is taken as (n,)) or logits (multiclass).
    y : ndarray, shape (n,)
        Labels in {-1, +1} (binary) or class labels in [0, C) (multiclass).

    Returns
    -------
    float
    """
    if task == "binary":
        f = _one_column(f, y)
        return float(np.mean((y * f > 0) + 0.5 * (f == 0)))
    if task == "multiclass":
        return float(np.mean(np.argmax(f, axis=1) == y))
    raise ConfigError(f"accuracy is defined for classification, not {task}")


def normalized_margin(task: str, f: np.ndarray, y: np.ndarray, norm: float, L: int) -> float:
    """min_i margin_i / ||theta||^L, the quantity whose maximization is problem (R1) (docs/math.md §1.4).

    Parameters
    ----------
    task, f, y
        As in :func:`margins`: f (n,) or (n, C), y (n,).
    norm : float
        ||theta||_2.
    L : int
        The model's homogeneity degree.

    Returns
    -------
    float
    """
    return float(np.min(margins(task, f, y)) / norm**L)


def log_normalized_grad(loss: str, f: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(log L, (dL/df) / L), both computed in log space: finite where L underflows to 0.

    This is what the loss-normalized learning rate eta / L(theta) of the no-weight-decay experiments
    (Fig. 4, Appendix B.1) needs: the step eta (dL/dtheta) / L never forms L or its gradient. Per sample,
    (dl_i/df_i) / sum_j l_j = sign * exp(log |dl_i/df_i| - logsumexp_j log l_j) (docs/math.md §1.3).

    Parameters
    ----------
    loss : str
        One of ``logistic``, ``exponential``, ``squared``, ``cross_entropy``.
    f : ndarray, shape (n,) or (n, C)
        Model outputs (logits for ``cross_entropy``).
    y : ndarray, shape (n,) or like ``f``
        Targets.

    Returns
    -------
    log_value : float
        log L.
    g : ndarray, shape of ``f``
        (dL/df) / L.
    """
    shape, f = np.shape(f), _one_column(f, y)
    if f.shape != shape:
        log_value, g = log_normalized_grad(loss, f, y)
        return log_value, g.reshape(shape)
    if loss == "squared":
        r = f - y
        total = float(np.sum(r * r))
        with np.errstate(divide="ignore"):
            return float(np.log(total / r.size)), 2.0 * r / total
    if loss in ("logistic", "exponential"):
        m = y * f
        log_l = log_softplus(np, -m) if loss == "logistic" else -m
        log_dl = -np.logaddexp(0.0, m) if loss == "logistic" else -m  # log sigma(-m) or -m
        total = _special().logsumexp(log_l)
        return float(total - np.log(f.shape[0])), -y * np.exp(log_dl - total)
    if loss == "cross_entropy":
        n = f.shape[0]
        rows = np.arange(n)
        s = f - f[rows, y][:, None]          # F_ij - F_{i,y_i}; 0 at the true class
        s[rows, y] = -np.inf
        lse = _special().logsumexp(s, axis=1)           # log sum_{j != y} e^{s_ij}
        log_l = log_softplus(np, lse)           # l_i = log(1 + e^{lse})
        sp = np.logaddexp(0.0, lse)          # log(1 + sum_j e^{s_ij}) = log-partition minus F_y
        total = _special().logsumexp(log_l)
        g = np.exp(s - sp[:, None] - total)  # softmax_j / sum l for j != y
        g[rows, y] = -np.exp(lse - sp - total)  # -(1 - p_y) / sum l
        return float(total - np.log(n)), g
    raise ConfigError(f"unknown loss {loss!r}; choose one of {sorted(TASKS)}")
