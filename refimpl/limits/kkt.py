"""KKT residuals of the parameter-space problems R1 (max margin) and R2 (min norm) at a given theta.

Theorems 3.5 and 3.10 say the late phase reaches KKT points of

    R1:  min 1/2 ||theta||^2  s.t.  q_m(theta) >= 1   (margins: y_i f_i, or f_{i,y_i} - f_{i,c})
    R2:  min 1/2 ||theta||^2  s.t.  f_i(theta) = y_i.

For models without a convex reformulation (diagonal nets with L > 2, ReLU MLPs) this is the checkable
statement. R1 is scored as in Lyu & Li (2020): rescale theta~ = theta / q_min^{1/L} so the smallest margin is
1, then find multipliers mu >= 0 minimizing the stationarity residual ||theta~ - sum mu_m grad q_m|| jointly
with complementary slackness sum mu_m (q~_m - 1), one NNLS (docs/limits.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import scipy.linalg

from dichotomy.errors import ConfigError
from dichotomy.refimpl import checks, losses, models
from dichotomy.refimpl.limits import ntk, qp
from dichotomy.refimpl.params import param_norm

MAX_CONSTRAINTS = 2000  # R1 keeps the samples with the smallest margins up to this many constraints


@dataclass(frozen=True)
class KKTResidual:
    """Scaled KKT residuals at theta; both 0 exactly at a KKT point.

    ``stationarity`` = ||theta~ - sum mu_m grad q_m(theta~)|| / ||theta~||.
    ``slackness``: R1, L sum mu_m (q~_m - 1) / ||theta~||^2 (the share of ||theta~||^2 = L sum mu_m q~_m carried
    by inactive constraints); R2, the relative infeasibility ||f - y|| / ||y||.
    ``min_margin`` (R1) = min_m q_m(theta) / ||theta||^L, the normalized margin.
    ``multipliers`` mu (m,) for the ``constraints`` kept (all of them unless R1 had more than
    :data:`MAX_CONSTRAINTS`: dropping constraints can only raise the residual, so it stays an upper bound).
    """

    problem: str
    stationarity: float
    slackness: float
    multipliers: np.ndarray
    constraints: int
    min_margin: float | None = None


def _distance(a: dict, b: dict) -> float:
    return float(np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in a)))


def _flat(module, config, params, X, tangent) -> np.ndarray:
    return np.asarray(module.jvp(config, params, X, tangent)).ravel()


def kkt_residual(module: ModuleType, config, params: dict[str, np.ndarray], X, y, loss: str) -> KKTResidual:
    """R1 (classification losses) or R2 (squared loss) KKT residual of ``params`` on the training data.

    Raises
    ------
    ConfigError
        Invalid params, inputs or targets (:func:`refimpl.checks.model_data`), theta = 0, or (R1) a
        theta that does not separate the training data.
    """
    params, X, y = checks.model_data(module, config, params, X, y, loss)
    if not param_norm(params) > 0:  # both problems are stated for the direction theta / ||theta||
        raise ConfigError("theta = 0 has no direction: the KKT residual is defined for a nonzero theta")
    f = module.forward(config, params, X)[0]  # checked above
    task, L = losses.task_of(loss), models.degree(module, config)
    if task == "regression":
        D, G = ntk.constraint_gram(module, config, params, X, y, loss)
        mu = scipy.linalg.lstsq(G, _flat(module, config, params, X, params))[0]
        r = ntk.vjp(module, config, params, X, D, mu)
        stat = _distance(params, r) / param_norm(params)
        infeasible = np.linalg.norm(f.ravel() - y.ravel()) / max(np.linalg.norm(y), np.finfo(float).tiny)
        return KKTResidual("R2", float(stat), float(infeasible), mu, len(mu))
    q = ntk.constraint_matrix(task, y, 1 if f.ndim == 1 else f.shape[1]) @ f.ravel()
    if q.min() <= 0:
        raise ConfigError(f"theta does not classify every training point correctly (min margin {q.min():.3g}): "
                          "R1's KKT conditions only apply to a separating theta")
    scale = q.min() ** (1.0 / L)
    theta = {k: p / scale for k, p in params.items()}
    per_sample = q.reshape(len(y), -1).min(axis=1) / q.min()
    keep = np.sort(np.argsort(per_sample, kind="stable")[: max(1, MAX_CONSTRAINTS // (q.size // len(y)))])
    Xk, yk = X[keep], y[keep]
    D, G = ntk.constraint_gram(module, config, theta, Xk, yk, loss)
    q_tilde = D @ np.asarray(module.predict(config, theta, Xk)).ravel()
    norm_sq = param_norm(theta) ** 2
    c = D @ _flat(module, config, theta, Xk, theta)
    mu = qp.nonnegative_fit(G, c, extra_rows=(L * (q_tilde - 1.0) / np.sqrt(norm_sq))[None, :])
    r = ntk.vjp(module, config, theta, Xk, D, mu)
    stat = _distance(theta, r) / np.sqrt(norm_sq)
    slack = L * float(mu @ (q_tilde - 1.0)) / norm_sq
    return KKTResidual("R1", float(stat), slack, mu, len(mu), float(q.min() / param_norm(params) ** L))
