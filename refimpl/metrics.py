"""The recorded metrics: one array-generic definition that every engine evaluates where its outputs are.

``xp`` is the array module of the outputs (NumPy for the reference and the numba engines, CuPy on the device),
and only the final scalars cross to the host, in one transfer per call. Each engine computes its outputs in its
own way; what is recorded from them is defined here once. Outputs are promoted to float64 first,
so a float32 engine's metrics are float64 functions of its float32 outputs, as refimpl computes them.

Losses are means over samples (refimpl/losses.py); ``train_log_loss`` = log L is formed in log space, finite
where L underflows to 0 at huge margins: log L = logsumexp_i log l_i - log n with log l_i = -y_i f_i
(exponential), log softplus(-y_i f_i) (logistic), log softplus(logsumexp_{c != y_i} F_ic - F_iy_i)
(cross-entropy), and log softplus(z) = z + log1p(-e^z / 2) for z < -20, where softplus(z) underflows.
"""

from __future__ import annotations

import math

import numpy as np

from dichotomy.refimpl import losses


def _host(a) -> np.ndarray:
    """A device array's values on the host (NumPy arrays pass through)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def logsumexp(xp, a, axis=None):
    """log sum exp(a) along ``axis``; -inf for an empty or all -inf set, inf/nan propagated.

    On NumPy arrays this is SciPy's (the one :mod:`refimpl.losses` uses, so the reference's numbers are its
    own); elsewhere the shifted sum log(sum e^(a - max)) + max.

    Parameters
    ----------
    xp : module
        The array module of ``a`` (numpy or cupy).
    a : array, any shape
    axis : int, optional
        None reduces over every entry.

    Returns
    -------
    array
        ``a``'s shape without ``axis``; 0-d when ``axis`` is None.
    """
    if xp is np:
        from scipy import special  # on first use, not at import

        return special.logsumexp(a, axis=axis)
    top = xp.max(a, axis=axis, keepdims=True)
    safe = xp.where(xp.isfinite(top), top, 0.0)
    out = xp.log(xp.sum(xp.exp(a - safe), axis=axis, keepdims=True)) + safe
    return out.reshape(()) if axis is None else xp.squeeze(out, axis=axis)


def _one_column(f, y):
    """Outputs (n, 1) of a one-output model against targets (n,): their column, so y * f is (n,), not (n, n)."""
    return f[:, 0] if f.ndim == 2 and f.shape[1] == 1 and y.ndim == 1 else f


def loss_value(xp, loss: str, f, y):
    """Mean loss (0-d array) of outputs f against targets y.

    Parameters
    ----------
    xp : module
        The array module of ``f`` and ``y`` (numpy or cupy).
    loss : str
        ``logistic``, ``exponential``, ``squared`` or ``cross_entropy``.
    f : array, shape (n,) or (n, C)
        Outputs, or logits (n, C) for ``cross_entropy``.
    y : array, shape (n,) or like ``f``
        Targets, or class labels (n,) for ``cross_entropy``.

    Returns
    -------
    array, shape ()
    """
    if loss == "logistic":
        return xp.mean(xp.logaddexp(0.0, -y * f))
    if loss == "exponential":
        return xp.mean(xp.exp(-y * f))
    if loss == "squared":
        r = f - y
        return xp.mean(r * r)
    if loss == "cross_entropy":  # one pass of shifted exponentials, as refimpl.losses.value_and_grad
        shifted = f - xp.max(f, axis=1, keepdims=True)
        total = xp.sum(xp.exp(shifted), axis=1)
        return xp.mean(xp.log(total) - shifted[xp.arange(f.shape[0]), y])
    raise ValueError(f"unknown loss {loss!r}")


def log_loss(xp, loss: str, f, y):
    """log of the mean loss (0-d array), in log space.

    Parameters
    ----------
    xp : module
        The array module of ``f`` and ``y`` (numpy or cupy).
    loss : str
        ``logistic``, ``exponential``, ``squared`` or ``cross_entropy``.
    f : array, shape (n,) or (n, C)
        Outputs, or logits (n, C) for ``cross_entropy``.
    y : array, shape (n,) or like ``f``
        Targets, or class labels (n,) for ``cross_entropy``.

    Returns
    -------
    array, shape ()
    """
    n = f.shape[0]
    if loss == "squared":
        r = f - y
        return xp.log(xp.mean(r * r))
    if loss == "logistic":
        per_sample = losses.log_softplus(xp, -y * f)
    elif loss == "exponential":
        per_sample = -y * f
    elif loss == "cross_entropy":
        per_sample = losses.log_softplus(xp, logsumexp(xp, losses.others_minus_true(xp, f, y), axis=1))
    else:
        raise ValueError(f"unknown loss {loss!r}")
    return logsumexp(xp, per_sample) - np.log(n)  # np.log, as refimpl.losses: math.log differs in the last bit


def accuracy(xp, task: str, f, y):
    """Fraction correct: binary ties (f = 0) count 1/2; multiclass takes the first maximal logit.

    Parameters
    ----------
    xp : module
        The array module of ``f`` and ``y`` (numpy or cupy).
    task : str
        ``binary`` or ``multiclass``.
    f : array, shape (n,) or (n, C)
        Outputs (n,) (binary) or logits (n, C) (multiclass).
    y : array, shape (n,)
        Labels in {-1, +1} (binary) or class labels in [0, C) (multiclass).

    Returns
    -------
    array, shape ()
    """
    if task == "binary":
        return xp.mean((y * f > 0) + 0.5 * (f == 0))
    return xp.mean(xp.argmax(f, axis=1) == y)


def min_margin(xp, task: str, f, y):
    """min_i margin_i: y_i f_i (binary) or F_{i,y_i} - max_{c != y_i} F_ic (multiclass).

    Parameters
    ----------
    xp : module
        The array module of ``f`` and ``y`` (numpy or cupy).
    task : str
        ``binary`` or ``multiclass``.
    f : array, shape (n,) or (n, C)
        Outputs (n,) (binary) or logits F (n, C) (multiclass).
    y : array, shape (n,)
        Labels in {-1, +1} (binary) or class labels in [0, C) (multiclass).

    Returns
    -------
    array, shape ()
    """
    if task == "binary":
        return xp.min(y * f)
    return -xp.max(xp.max(losses.others_minus_true(xp, f, y), axis=1))


def _power(norm: float, L: int) -> float:
    """norm**L in C's pow, as refimpl.losses computes it, or inf where that overflows.

    NumPy's SIMD power differs from C's pow in the last bit on some hosts; an overflow gives margin 0 rather than
    an OverflowError.
    """
    try:
        return norm**L
    except OverflowError:
        return math.inf


def evaluate(xp, task: str, loss: str, L: int, f_train, y_train, f_test, y_test, arrays) -> dict[str, float]:
    """Every metric recorded at one step, from the outputs and the parameters.

    Parameters
    ----------
    xp : module
        The array module of the outputs (numpy or cupy).
    task, loss : str
        The dataset's task and loss (:data:`refimpl.losses.TASKS`).
    L : int
        The model's homogeneity degree.
    f_train, f_test : array
        Outputs (n,) or logits (n, C), any real dtype (promoted to float64 first).
    y_train, y_test : array
        Targets (float64) or class labels (int64).
    arrays : iterable of array
        The parameters in any layout; only ||theta||_2 is used (a sum of dot products, as
        :func:`refimpl.params.param_norm`).

    Returns
    -------
    dict
        ``train_loss``, ``train_log_loss`` (log L in log space), ``test_loss``, ``param_norm``, and for
        classification ``train_acc``, ``test_acc`` and ``margin`` = min_i margin_i / ||theta||^L (0 when theta = 0).
    """
    with np.errstate(all="ignore"):  # NumPy arrays (tests): log(0) and overflow are meant, not warned about
        f_train, f_test = (_one_column(f.astype(np.float64), y) for f, y in ((f_train, y_train), (f_test, y_test)))
        values = {"train_loss": loss_value(xp, loss, f_train, y_train),
                  "train_log_loss": log_loss(xp, loss, f_train, y_train),
                  "test_loss": loss_value(xp, loss, f_test, y_test),
                  "sum_squares": sum(xp.vdot(a.astype(np.float64), a.astype(np.float64)) for a in arrays)}
        if task != "regression":
            values["train_acc"] = accuracy(xp, task, f_train, y_train)
            values["test_acc"] = accuracy(xp, task, f_test, y_test)
            values["min_margin"] = min_margin(xp, task, f_train, y_train)
        host = _host(xp.stack([xp.asarray(v, dtype=np.float64) for v in values.values()]))
        out = {k: float(v) for k, v in zip(values, host, strict=True)}
        norm = math.sqrt(out.pop("sum_squares"))
        out["param_norm"] = norm
        if task != "regression":
            low = out.pop("min_margin")
            out["margin"] = float(low / _power(norm, L)) if norm > 0 else 0.0
    return {k: out[k] for k in ("train_loss", "train_log_loss", "test_loss", "param_norm", "train_acc",
                                "test_acc", "margin") if k in out}
