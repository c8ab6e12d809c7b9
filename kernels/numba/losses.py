"""Losses, their output gradients and the classification metrics, compiled (twin of refimpl/losses.py).

Codes: 0 logistic, 1 exponential, 2 squared, 3 cross-entropy. Scalar losses take f, y of shape (n,);
cross-entropy takes logits (n, C) and integer labels. Every value is a mean and every gradient includes 1/n.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

CODES = {"logistic": 0, "exponential": 1, "squared": 2, "cross_entropy": 3}


@njit(cache=True)
def point(code, f, y):
    """(loss, d loss / d f) of one output f with target y, for the scalar losses."""
    if code == 0:
        m = y * f
        s = 1.0 / (1.0 + math.exp(m)) if m < 0 else math.exp(-m) / (1.0 + math.exp(-m))
        return max(-m, 0.0) + math.log1p(math.exp(-abs(m))), -y * s
    if code == 1:
        e = math.exp(-y * f)
        return e, -y * e
    r = f - y
    return r * r, 2.0 * r


@njit(cache=True)
def scalar_value_grad(code, f, y, g):
    """Mean loss of outputs f (n,) against y; writes dL/df (with the 1/n) into g (n,)."""
    n = f.shape[0]
    total = 0.0
    for i in range(n):
        value, slope = point(code, f[i], y[i])
        total += value
        g[i] = slope / n
    return total / n


@njit(cache=True)
def cross_entropy_value_grad(F, y, G):
    """Mean cross-entropy of logits F (n, C) against labels y; writes dL/dF into G (n, C)."""
    n, C = F.shape
    total = 0.0
    for i in range(n):
        top = F[i, 0]
        for c in range(1, C):
            top = max(top, F[i, c])
        s = 0.0
        for c in range(C):
            G[i, c] = math.exp(F[i, c] - top)
            s += G[i, c]
        label = int(y[i])  # a no-op for integer labels; lets one compiled MLP loop also take real targets
        total += math.log(s) - (F[i, label] - top)
        for c in range(C):
            G[i, c] = G[i, c] / s / n
        G[i, label] -= 1.0 / n
    return total / n


@njit(cache=True)
def _log_softplus(z):
    if z < -20.0:
        return z + math.log1p(-0.5 * math.exp(z))
    return math.log(max(z, 0.0) + math.log1p(math.exp(-abs(z))))


@njit(cache=True)
def _logsumexp(a):
    top = a.max()
    if not math.isfinite(top):
        return top
    s = 0.0
    for x in a:
        s += math.exp(x - top)
    return top + math.log(s)


@njit(cache=True)
def log_value_scalar(code, f, y):
    """log of the mean logistic, exponential or squared loss of f (n,), in log space."""
    n = f.shape[0]
    if code == 2:
        total = 0.0
        for i in range(n):
            total += (f[i] - y[i]) ** 2
        return math.log(total / n) if total > 0 else -math.inf
    per = np.empty(n)
    for i in range(n):
        per[i] = _log_softplus(-y[i] * f[i]) if code == 0 else -y[i] * f[i]
    return _logsumexp(per) - math.log(n)


@njit(cache=True)
def log_value_cross_entropy(F, y):
    """log of the mean cross-entropy of logits F (n, C): logsumexp_i log softplus(logsumexp_c gap) - log n."""
    n, C = F.shape
    per = np.empty(n)
    gaps = np.empty(C - 1)
    for i in range(n):
        k = 0
        for c in range(C):
            if c != y[i]:
                gaps[k] = F[i, c] - F[i, y[i]]
                k += 1
        per[i] = _log_softplus(_logsumexp(gaps))
    return _logsumexp(per) - math.log(n)


@njit(cache=True)
def margins_scalar(f, y):
    """y_i f_i, shape (n,)."""
    return y * f


@njit(cache=True)
def margins_cross_entropy(F, y):
    """F_{i,y_i} - max_{c != y_i} F_ic, shape (n,)."""
    n, C = F.shape
    out = np.empty(n)
    for i in range(n):
        best = -math.inf
        for c in range(C):
            if c != y[i]:
                best = max(best, F[i, c])
        out[i] = F[i, y[i]] - best
    return out


@njit(cache=True)
def accuracy_scalar(f, y):
    """Fraction with y_i f_i > 0; ties (f_i = 0) count 1/2, as in the official code."""
    total = 0.0
    for i in range(f.shape[0]):
        m = y[i] * f[i]
        total += 1.0 if m > 0 else (0.5 if f[i] == 0 else 0.0)
    return total / f.shape[0]


@njit(cache=True)
def accuracy_cross_entropy(F, y):
    """Fraction whose first maximal logit is the label (np.argmax's tie rule)."""
    total = 0.0
    for i in range(F.shape[0]):
        total += 1.0 if np.argmax(F[i]) == y[i] else 0.0
    return total / F.shape[0]
