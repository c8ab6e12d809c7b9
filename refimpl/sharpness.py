"""Sharpness: the top eigenvalue of the Hessian of the objective L(theta) + (wd/2) ||theta||^2 (docs/math.md §7.4).

GD at learning rate lr follows the gradient flow it discretizes only while lr x sharpness stays well below 2:
near a point where the Hessian H has eigenvalue s, a step multiplies that direction by (1 - lr s), which
oscillates for lr s > 1 and grows for lr s > 2 (the edge of stability; Cohen et al., ICLR 2021). Such a GD run
catapults or hovers where the flow does not go.

lambda_max(H) is found by Lanczos iteration (SciPy's ``eigsh``, ARPACK) on Hessian-vector products. The
product of the weight decay's part is exact (wd v); the loss's is a central difference of the model's exact
gradient (no model here has a second-order pass):

    H_L v ~ (grad L(theta + eps v) - grad L(theta - eps v)) / (2 eps),   eps = EPS x max(1, ||theta||),  ||v|| = 1,

with error O(eps^2) from the third derivative plus O(machine epsilon / eps) from rounding: EPS = 6e-6 (the cube
root of float64's epsilon) balances them: within 1e-7 relative of the exact Hessian of the diagonal net
(tests/refimpl/test_sharpness.py). A ReLU net is smooth only between kinks, and a difference across one would
see a jump (a spurious curvature of order 1/eps): its gradients are taken on the smooth piece theta sits on
(its ReLU pattern frozen, ``forward(..., pattern=)``), which is the Hessian almost everywhere.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.refimpl import checks, losses
from dichotomy.refimpl.params import flatten, unflatten

EPS = 6e-6
DENSE_MAX = 64  # up to this many parameters the Hessian is formed column by column and diagonalized exactly


def sharpness(module: ModuleType, config, params: dict[str, np.ndarray], X, y, loss: str, wd: float = 0.0, *,
              tol: float = 1e-6, seed: int = 0) -> float:
    """lambda_max of the Hessian of L(theta) + (wd/2) ||theta||^2 at ``params`` (module docstring).

    Parameters
    ----------
    module, config, params
        A model of :data:`refimpl.models.MODELS`, its Config and parameters (checked).
    X, y, loss
        The training set and its loss.
    wd : float
        The weight decay; it adds exactly wd to every eigenvalue.
    tol : float
        Lanczos's relative tolerance on the eigenvalue.
    seed : int
        Lanczos's start vector is drawn from ``np.random.default_rng(seed)``: the result is reproducible.

    Returns
    -------
    float
        The largest eigenvalue; GD at ``lr`` is in the gradient-flow regime while lr x this is well below 2.
    """
    params, X = checks.check_call(module, config, params, X)
    y = losses.check_targets(loss, module.forward(config, params, X)[0].shape, y)
    wd = checks.positive("weight decay wd", wd, allow_zero=True)
    theta = flatten(params)
    if not np.all(np.isfinite(theta)):
        raise ConfigError("the parameters are not finite: no sharpness")
    eps = EPS * max(1.0, float(np.linalg.norm(theta)))
    # a piecewise-smooth model (its forward takes a pattern) is differentiated on theta's piece
    frozen = {"pattern": module.forward(config, params, X)[1][1]} if _takes_pattern(module) else {}

    def grad(vec: np.ndarray) -> np.ndarray:
        p = unflatten(vec, params)
        f, cache = module.forward(config, p, X, **frozen)
        return flatten(module.backward(config, p, cache, losses.value_and_grad(loss, f, y)[1]))

    def hvp(v: np.ndarray) -> np.ndarray:
        v = np.ravel(v)
        norm = float(np.linalg.norm(v))
        if norm == 0:
            return np.zeros_like(v)
        u = v / norm
        return norm * (grad(theta + eps * u) - grad(theta - eps * u)) / (2 * eps) + wd * v

    with np.errstate(over="ignore", invalid="ignore"):
        P = theta.size
        if P <= DENSE_MAX:
            H = np.stack([hvp(e) for e in np.eye(P)], axis=1)
            value = float(np.linalg.eigvalsh((H + H.T) / 2)[-1])
        else:
            from scipy.sparse.linalg import ArpackError, LinearOperator, eigsh

            v0 = np.random.default_rng(seed).standard_normal(P)
            op = LinearOperator((P, P), matvec=hvp, dtype=np.float64)
            try:
                value = float(eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0])
            except ArpackError as e:  # ArpackNoConvergence included
                raise ConfigError(f"Lanczos found no top Hessian eigenvalue here ({e}); try a looser tol") from None
    if not np.isfinite(value):
        raise ConfigError("the Hessian-vector products are not finite here: the loss overflows near these parameters")
    return value


def _takes_pattern(module: ModuleType) -> bool:
    code = module.forward.__code__
    return "pattern" in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
