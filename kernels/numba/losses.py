"""Losses and their output gradients, compiled (twin of refimpl/losses.py; the metrics are refimpl/metrics.py).

Codes: :data:`dichotomy.kernels.codes.LOSS_CODES`. Scalar losses take f, y of shape (n,);
cross-entropy takes logits (n, C) and integer labels. Every value is a mean and every gradient includes 1/n.
"""

from __future__ import annotations

import math

from numba import njit

from dichotomy.kernels.codes import EXPONENTIAL, LOGISTIC


@njit(cache=True)
def point(code, f, y):
    """(loss, d loss / d f) of one output f with target y, for the scalar losses."""
    if code == LOGISTIC:
        m = y * f
        s = 1.0 / (1.0 + math.exp(m)) if m < 0 else math.exp(-m) / (1.0 + math.exp(-m))
        return max(-m, 0.0) + math.log1p(math.exp(-abs(m))), -y * s
    if code == EXPONENTIAL:
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
