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
# What the layers above ask of this model (plain data: the oracle imports nothing above it).
QUICK_PRESET = "fig1a-quick"  # what `dichotomy train` runs when no --preset is given
STANDARD_LOSS = "logistic"  # the loss of its standard problems (peer timing)
SMALL_PROBLEM = {"dataset": "sparse_linear_classification", "data": {"d": 64, "n_train": 32, "n_test": 16, "k": 3},
                 "model": {"alpha": 4.0, "L": 2}, "lr": 0.05, "wd": 1e-2}  # crosscheck, golden files
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
    """K(x, x') = <x, x'>_S with S = L^2 (u^{2L-2} + v^{2L-2}); shape (n1, n2) (docs/limits.md §2).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``u`` and ``v``, shape (d,) each.
    X1 : ndarray, shape (n1, d)
    X2 : ndarray, shape (n2, d)

    Returns
    -------
    ndarray, shape (n1, n2)
    """
    L = config.L
    return blocks.gram(X1, X2, L * L * (params["u"] ** (2 * L - 2) + params["v"] ** (2 * L - 2)))


def alpha_from_per_coordinate(a: float, d: int) -> float:
    """Initial norm ||theta(0)|| for the paper's per-coordinate init u = v = a: a * sqrt(2d)."""
    return a * math.sqrt(2 * d)


def init(config: Config, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """u = v = alpha / sqrt(2d) * 1, so w(0) = 0 and ||theta(0)|| = alpha. Deterministic; ``rng`` unused.

    Parameters
    ----------
    config : Config
    rng : numpy.random.Generator, optional

    Returns
    -------
    dict of ndarray
        ``u`` and ``v``, shape (d,) each, float64.
    """
    u = np.full(config.d, config.alpha / math.sqrt(2 * config.d))
    return {"u": u, "v": u.copy()}


def weights(config: Config, params: dict[str, np.ndarray]) -> np.ndarray:
    """The linear predictor w = u^L - v^L, shape (d,).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``u`` and ``v``, shape (d,) each.

    Returns
    -------
    ndarray, shape (d,)
    """
    return params["u"] ** config.L - params["v"] ** config.L


def check_inputs(config: Config, X) -> np.ndarray:
    """X must be a finite (n, d) numeric array.

    Parameters
    ----------
    config : Config
    X : array_like, shape (n, d)
        Real: float or exact integer (+-1 data as int8).

    Returns
    -------
    ndarray, shape (n, d)
        ``np.asarray(X)``, its dtype kept.
    """
    X = checks.finite_array("X", X, ndim=2, real=True)
    if X.shape[1] != config.d:
        raise errors.ConfigError(f"X has {X.shape[1]} columns but the diagonal net has d={config.d}")
    return X


def forward(config: Config, params, X):
    """Outputs f = X w, shape (n,), and the cache for :func:`backward` (here just X).

    Unchecked: the engine's per-step path (use :func:`predict` on untrusted input).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``u`` and ``v``, shape (d,) each.
    X : ndarray, shape (n, d)

    Returns
    -------
    f : ndarray, shape (n,)
    cache : ndarray, shape (n, d)
        X itself.
    """
    return blocks.matvec(X, weights(config, params)), X


def predict(config: Config, params, X) -> np.ndarray:
    """f(theta; x_i) = <u^L - v^L, x_i> for every row of X (n, d); shape (n,).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        ``u`` and ``v``, shape (d,) each.
    X : array_like, shape (n, d)

    Returns
    -------
    ndarray, shape (n,)
    """
    params, X = checks.check_call(_THIS, config, params, X)
    return forward(config, params, X)[0]


def backward(config: Config, params, cache, g: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient of sum_i g_i f_i: du = L u^{L-1} (X^T g), dv = -L v^{L-1} (X^T g) (docs/math.md §2.1).

    Unchecked, like :func:`forward`.

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``u`` and ``v``, shape (d,) each.
    cache : ndarray, shape (n, d)
        X, from :func:`forward`.
    g : ndarray, shape (n,)
        The output cotangent.

    Returns
    -------
    dict of ndarray
        ``u`` and ``v``, shape (d,) each.
    """
    gw = blocks.rmatvec(cache, g)
    L = config.L
    return {"u": L * params["u"] ** (L - 1) * gw, "v": -L * params["v"] ** (L - 1) * gw}


def jvp(config: Config, params, X, tangent) -> np.ndarray:
    """Directional derivative <grad f(theta; x_i), t> = <x_i, L u^{L-1} t_u - L v^{L-1} t_v>; shape (n,).

    Parameters
    ----------
    config : Config
    params, tangent : dict of array_like
        ``u`` and ``v``, shape (d,) each; ``tangent`` is the direction t.
    X : array_like, shape (n, d)

    Returns
    -------
    ndarray, shape (n,)
    """
    params, X, tangent = checks.check_call(_THIS, config, params, X, tangent)
    L = config.L
    return blocks.matvec(X, L * params["u"] ** (L - 1) * tangent["u"] - L * params["v"] ** (L - 1) * tangent["v"])


def loss_and_grad(config: Config, params, X, y, loss: str):
    """Mean loss over (X, y) and its gradient, shaped like ``params`` (:func:`refimpl.objective.loss_and_grad`).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        ``u`` and ``v``, shape (d,) each.
    X : array_like, shape (n, d)
    y : array_like, shape (n,)
        Targets of ``loss``.
    loss : str

    Returns
    -------
    value : float
    grad : dict of ndarray
        ``u`` and ``v``, shape (d,) each.
    """
    return objective.loss_and_grad(_THIS, config, params, X, y, loss)


def ntk_features(config: Config, params, X) -> np.ndarray:
    """Jacobian of the outputs, [L u^{L-1} * x_i, -L v^{L-1} * x_i] per row; shape (n, 2d) (docs §2.2).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        ``u`` and ``v``, shape (d,) each.
    X : array_like, shape (n, d)

    Returns
    -------
    ndarray, shape (n, 2d)
    """
    params, X = checks.check_call(_THIS, config, params, X)
    L = config.L
    Xf = np.asarray(X, dtype=np.float64)
    return np.hstack([Xf * (L * params["u"] ** (L - 1)), Xf * (-L * params["v"] ** (L - 1))])


def bench_problem(size: dict) -> tuple[str, dict, dict]:
    """``dichotomy bench``'s problem of ``size`` ({"d", "n"}): (dataset generator, its arguments, Config arguments)."""
    return "sparse_linear_classification", {"d": size["d"], "n_train": size["n"], "n_test": 1, "k": 3}, {"alpha": 128.0}


def step_work(config: Config, n: int) -> tuple[int, int]:
    """The least work of one GD step on n examples: (bytes, FLOPs).

    Bytes: X read once as int8 (n d). FLOPs: its two products, f = X w and X^T g (4 n d).
    """
    return n * config.d, 4 * n * config.d
