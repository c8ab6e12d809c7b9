"""Diagonal linear net of depth L: w = u^L - v^L, f(x) = <w, x> (paper §3.2.3; docs/math.md §2).

Parameters are ``{"u": (d,), "v": (d,)}``. The model is L-homogeneous: f(c theta) = c^L f(theta).
``alpha`` is the **initial L2 norm of theta** (the official code's convention): u = v = alpha / sqrt(2d).
The paper's per-coordinate scale a (u = v = a) is ``alpha = a * sqrt(2d)``; see
:func:`alpha_from_per_coordinate`. The two conventions shift log(alpha), hence t* = log(alpha)/lambda, by
log(sqrt(2d)).

Inputs X may be float64 or any exact integer type (the paper's data are +-1, stored as int8); products are
formed in float64 by row blocks (refimpl/blocks.py) so an int8 matrix is never copied whole.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import blocks, checks, objective

NAME = "diagonal-net"  # the model's one name: registry key, CLI argument, trajectory field
INPUTS = "features"  # rows of X are feature vectors
SCALE_CONVENTION = ("alpha = ||theta(0)||_2 (official code); the paper's per-coordinate scale alpha / sqrt(2d) "
                    "gives ln(alpha / sqrt(2d)) / lambda")
_THIS = sys.modules[__name__]  # for the shared argument checks (checks.check_call)


@dataclass(frozen=True)
class Config:
    """Diagonal net hyper-parameters: input dimension ``d``, initial norm ``alpha``, depth ``L``."""

    d: int
    alpha: float
    L: int = 2

    def __post_init__(self):
        checks.positive_int("d", self.d)
        checks.config_number("alpha", self.alpha, allow_zero=True)
        checks.positive_int("depth L", self.L, minimum=2)


def shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes: u and v, (d,) each."""
    return {"u": (config.d,), "v": (config.d,)}


def degree(config: Config) -> int:
    """The homogeneity degree: f(c theta) = c^L f(theta)."""
    return config.L


def init_scale(config: Config) -> float:
    """alpha with theta(0) = alpha * theta_bar, ||theta_bar|| = 1 (see :data:`SCALE_CONVENTION`)."""
    return float(config.alpha)


def n_outputs(config: Config) -> int:
    """Outputs per input: one scalar."""
    return 1


def config_for(data, **model_args) -> Config:
    """The Config of ``model_args`` with the input dimension d taken from the dataset."""
    return Config(d=int(np.shape(data.X_train)[1]), **model_args)


def late_limit(config: Config, task: str) -> str | None:
    """The late-phase limit of Theorems 3.5 / 3.10 that is a convex program here, or None.

    With L = 2, w = u^2 - v^2 and ||theta||^2 = ||w||_1 at the optimum: (R1) is the max-L1-margin LP
    (binary), (R2) the min-L1 interpolation (regression). Deeper nets have no convex form.
    """
    if config.L != 2:
        return None
    return {"binary": "max-l1-margin", "regression": "min-l1-interpolation"}.get(task)


def ntk_gram(config: Config, params, X1, X2) -> np.ndarray:
    """K(x, x') = <x, x'>_S with S = L^2 (u^{2L-2} + v^{2L-2}); shape (n1, n2) (docs/limits.md §2)."""
    L = config.L
    return blocks.gram(X1, X2, L * L * (params["u"] ** (2 * L - 2) + params["v"] ** (2 * L - 2)))


def alpha_from_per_coordinate(a: float, d: int) -> float:
    """Initial norm ||theta(0)|| for the paper's per-coordinate init u = v = a: a * sqrt(2d)."""
    return a * math.sqrt(2 * d)


def init(config: Config, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """u = v = alpha / sqrt(2d) * 1, so w(0) = 0 and ||theta(0)|| = alpha. Deterministic; ``rng`` unused."""
    u = np.full(config.d, config.alpha / math.sqrt(2 * config.d))
    return {"u": u, "v": u.copy()}


def weights(config: Config, params: dict[str, np.ndarray]) -> np.ndarray:
    """The linear predictor w = u^L - v^L, shape (d,)."""
    return params["u"] ** config.L - params["v"] ** config.L


def check_inputs(config: Config, X) -> np.ndarray:
    """X must be a finite (n, d) numeric array."""
    X = checks.finite_array("X", X, ndim=2, real=True)
    if X.shape[1] != config.d:
        raise errors.ConfigError(f"X has {X.shape[1]} columns but the diagonal net has d={config.d}")
    return X


def forward(config: Config, params, X):
    """Outputs f = X w, shape (n,), and the cache for :func:`backward` (here just X).
    Unchecked: the engine's per-step path (use :func:`predict` on untrusted input)."""
    return blocks.matvec(X, weights(config, params)), X


def predict(config: Config, params, X) -> np.ndarray:
    """f(theta; x_i) = <u^L - v^L, x_i> for every row of X (n, d); shape (n,)."""
    params, X = checks.check_call(_THIS, config, params, X)
    return forward(config, params, X)[0]


def backward(config: Config, params, cache, g: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient of sum_i g_i f_i: du = L u^{L-1} (X^T g), dv = -L v^{L-1} (X^T g) (docs/math.md §2.1).
    Unchecked, like :func:`forward`."""
    gw = blocks.rmatvec(cache, g)
    L = config.L
    return {"u": L * params["u"] ** (L - 1) * gw, "v": -L * params["v"] ** (L - 1) * gw}


def jvp(config: Config, params, X, tangent) -> np.ndarray:
    """Directional derivative <grad f(theta; x_i), t> = <x_i, L u^{L-1} t_u - L v^{L-1} t_v>; shape (n,)."""
    params, X, tangent = checks.check_call(_THIS, config, params, X, tangent)
    L = config.L
    return blocks.matvec(X, L * params["u"] ** (L - 1) * tangent["u"] - L * params["v"] ** (L - 1) * tangent["v"])


def loss_and_grad(config: Config, params, X, y, loss: str):
    """Mean loss over (X, y) and its gradient, shaped like ``params`` (:func:`refimpl.objective.loss_and_grad`)."""
    return objective.loss_and_grad(_THIS, config, params, X, y, loss)


def ntk_features(config: Config, params, X) -> np.ndarray:
    """Jacobian of the outputs, [L u^{L-1} * x_i, -L v^{L-1} * x_i] per row; shape (n, 2d) (docs §2.2)."""
    params, X = checks.check_call(_THIS, config, params, X)
    L = config.L
    Xf = np.asarray(X, dtype=np.float64)
    return np.hstack([Xf * (L * params["u"] ** (L - 1)), Xf * (-L * params["v"] ** (L - 1))])
