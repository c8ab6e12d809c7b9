"""Symmetric matrix factorization for completion: W = U U^T - V V^T, f((i, j)) = W_ij (paper §3.3.3).

Parameters are ``{"U": (d, d), "V": (d, d)}``; the model is 2-homogeneous. Inputs are index pairs
X = [[i, j], ...] of shape (n, 2). Only the observed entries of W are formed: the forward pass costs
2 n d multiply-adds and the backward pass multiplies U by G + G^T, G holding the n observed cotangents
(docs/math.md §3).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from dichotomy import errors
from dichotomy.refimpl import checks, objective

NAME = "matrix-completion"  # the model's one name: registry key, CLI argument, trajectory field
INPUTS = "index-pairs"  # rows of X are integer index pairs (i, j)
SCALE_CONVENTION = "U(0) = V(0) = alpha I (paper and code)"
# What the layers above ask of this model (plain data: the oracle imports nothing above it).
QUICK_PRESET = "fig3-quick"  # what `dichotomy train` runs when no --preset is given
STANDARD_LOSS = "squared"  # the loss of its standard problems (peer timing)
SMALL_PROBLEM = {"dataset": "multiplication_table", "data": {"d": 12, "train_fraction": 0.3},
                 "model": {"alpha": 1.0, "sigma": 0.1}, "lr": 0.05, "wd": 1e-3}  # crosscheck, golden files
_THIS = sys.modules[__name__]  # for the shared argument checks (checks.check_call)

_DENSE_MAX_D = 1024  # backward builds G densely up to this size


@dataclass(frozen=True)
class Config:
    """Size ``d``, init scale ``alpha`` (U = V = alpha I) and init perturbation ``sigma`` (Theorem 3.12)."""

    d: int
    alpha: float
    sigma: float = 0.0

    def __post_init__(self):
        checks.positive_int("d", self.d)
        checks.config_number("alpha", self.alpha, allow_zero=True)
        checks.config_number("sigma", self.sigma, allow_zero=True)


def shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes: U and V, (d, d) each."""
    return {"U": (config.d, config.d), "V": (config.d, config.d)}


def degree(config: Config) -> int:
    """The homogeneity degree: W(c theta) = c^2 W(theta)."""
    return 2


def init_scale(config: Config) -> float:
    """alpha with theta(0) = alpha * theta_bar, theta_bar = (I, I) when sigma = 0."""
    return float(config.alpha)


def n_outputs(config: Config) -> int:
    """Outputs per input (index pair): one entry."""
    return 1


def config_for(data, **model_args) -> Config:
    """The Config of ``model_args`` with the matrix size d from the dataset.

    d is ``info["d"]``, else the largest index seen plus one.
    """
    d = data.info.get("d")
    if d is None:
        d = int(max(np.max(data.X_train, initial=-1), np.max(data.X_test, initial=-1))) + 1
    return Config(d=int(d), **model_args)


def late_limit(config: Config, task: str) -> str | None:
    """(R2) for W = U U^T - V V^T is the min-nuclear-norm completion (an SDP); no classification form."""
    return "min-nuclear-norm" if task == "regression" else None


def ntk_gram(config: Config, params, X1, X2) -> np.ndarray:
    """K((i,j),(k,l)) = d_ik M_jl + d_il M_jk + d_jk M_il + d_jl M_ik with M = U U^T + V V^T.

    The Gram has shape (n1, n2) (docs/limits.md §2).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``U`` and ``V``, shape (d, d) each.
    X1 : ndarray, shape (n1, 2)
    X2 : ndarray, shape (n2, 2)
        Integer index pairs.

    Returns
    -------
    ndarray, shape (n1, n2)
    """
    M = params["U"] @ params["U"].T + params["V"] @ params["V"].T
    (i, j), (k, m) = X1.T[:, :, None], X2.T[:, None, :]  # pairs (i, j) of X1 against (k, m) of X2
    return (i == k) * M[j, m] + (i == m) * M[j, k] + (j == k) * M[i, m] + (j == m) * M[i, k]


def init(config: Config, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """U, V = alpha I + sigma N(0, 1) entries, drawn independently (Theorem 3.12); exactly alpha I if sigma = 0.

    With sigma = 0 (the official code and Corollary 3.11) W(0) = 0 and ``rng`` is not needed.

    Parameters
    ----------
    config : Config
    rng : numpy.random.Generator, optional
        Required when sigma > 0.

    Returns
    -------
    dict of ndarray
        ``U`` and ``V``, shape (d, d) each, float64.
    """
    eye = config.alpha * np.eye(config.d)
    if config.sigma == 0:
        return {"U": eye, "V": eye.copy()}
    if rng is None:
        raise errors.ConfigError("sigma > 0 draws a random perturbation: pass rng=np.random.default_rng(seed)")
    return {"U": eye + config.sigma * rng.standard_normal(eye.shape),
            "V": eye + config.sigma * rng.standard_normal(eye.shape)}


def full_matrix(config: Config, params) -> np.ndarray:
    """The whole d x d matrix W = U U^T - V V^T (for evaluation and plots, not for training).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``U`` and ``V``, shape (d, d) each.

    Returns
    -------
    ndarray, shape (d, d)
    """
    U, V = params["U"], params["V"]
    return U @ U.T - V @ V.T


def check_inputs(config: Config, X) -> np.ndarray:
    """X must be an (n, 2) integer array of indices in [0, d).

    Parameters
    ----------
    config : Config
    X : array_like, shape (n, 2)

    Returns
    -------
    ndarray, shape (n, 2)
        ``np.asarray(X)``, its integer dtype kept.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2 or X.dtype.kind not in "iu":
        raise errors.ConfigError(f"matrix completion inputs must be (n, 2) integer index pairs, got "
                                 f"shape {X.shape} dtype {X.dtype}")
    if X.size and (X.min() < 0 or X.max() >= config.d):
        raise errors.ConfigError(f"index pairs must lie in [0, {config.d}), got range [{X.min()}, {X.max()}]")
    return X


def forward(config: Config, params, X):
    """Outputs f_k = <U_i, U_j> - <V_i, V_j> for each pair (i, j) = X[k], shape (n,), and the cache X.

    Unchecked: the engine's per-step path (use :func:`predict` on untrusted input).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``U`` and ``V``, shape (d, d) each.
    X : ndarray, shape (n, 2)
        Integer index pairs.

    Returns
    -------
    f : ndarray, shape (n,)
    cache : ndarray, shape (n, 2)
        X itself.
    """
    i, j = X[:, 0], X[:, 1]
    U, V = params["U"], params["V"]
    return np.einsum("kr,kr->k", U[i], U[j]) - np.einsum("kr,kr->k", V[i], V[j]), X


def predict(config: Config, params, X) -> np.ndarray:
    """Entries W_{i_k j_k} of W = U U^T - V V^T at the index pairs X (n, 2); shape (n,).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        ``U`` and ``V``, shape (d, d) each.
    X : array_like, shape (n, 2)
        Integer index pairs.

    Returns
    -------
    ndarray, shape (n,)
    """
    params, X = checks.check_call(_THIS, config, params, X)
    return forward(config, params, X)[0]


def backward(config: Config, params, cache, g: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient of sum_k g_k W_{i_k j_k}: dU = (G + G^T) U, dV = -(G + G^T) V, G = sum_k g_k e_i e_j^T.

    Duplicated pairs are summed. G is dense (one bincount) up to d = 1024, where that is ~20x faster in
    NumPy than scipy.sparse; beyond, a CSR matrix keeps the cost O(n d) (docs/math.md §3.1).
    Unchecked, like :func:`forward`.

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        ``U`` and ``V``, shape (d, d) each.
    cache : ndarray, shape (n, 2)
        X, from :func:`forward`.
    g : ndarray, shape (n,)
        The output cotangent.

    Returns
    -------
    dict of ndarray
        ``U`` and ``V``, shape (d, d) each.
    """
    X, d = cache, config.d
    if d <= _DENSE_MAX_D:
        G = np.bincount(X[:, 0] * d + X[:, 1], weights=g, minlength=d * d).reshape(d, d)
    else:
        G = sp.csr_array(sp.coo_array((g, (X[:, 0], X[:, 1])), shape=(d, d)))
    S = G + G.T
    return {"U": S @ params["U"], "V": -(S @ params["V"])}


def jvp(config: Config, params, X, tangent) -> np.ndarray:
    """Directional derivative of W_ij along (T_U, T_V): <T_U_i, U_j> + <U_i, T_U_j> - (same for V); (n,).

    Parameters
    ----------
    config : Config
    params, tangent : dict of array_like
        ``U`` and ``V``, shape (d, d) each; ``tangent`` is the direction (T_U, T_V).
    X : array_like, shape (n, 2)
        Integer index pairs.

    Returns
    -------
    ndarray, shape (n,)
    """
    params, X, tangent = checks.check_call(_THIS, config, params, X, tangent)
    i, j = X[:, 0], X[:, 1]
    out = np.zeros(X.shape[0], dtype=np.result_type(params["U"], tangent["U"]))
    for name, sign in (("U", 1.0), ("V", -1.0)):
        P, T = params[name], tangent[name]
        out += sign * (np.einsum("kr,kr->k", T[i], P[j]) + np.einsum("kr,kr->k", P[i], T[j]))
    return out


def loss_and_grad(config: Config, params, X, y, loss: str):
    """Mean loss over (X, y) and its gradient, shaped like ``params`` (:func:`refimpl.objective.loss_and_grad`).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        ``U`` and ``V``, shape (d, d) each.
    X : array_like, shape (n, 2)
        Integer index pairs.
    y : array_like, shape (n,)
        Targets of ``loss``.
    loss : str

    Returns
    -------
    value : float
    grad : dict of ndarray
        ``U`` and ``V``, shape (d, d) each.
    """
    return objective.loss_and_grad(_THIS, config, params, X, y, loss)


def ntk_features(config: Config, params, X) -> np.ndarray:
    """Jacobian of the outputs: row k is vec(e_i U_j^T + e_j U_i^T, -(e_i V_j^T + e_j V_i^T)); (n, 2 d^2).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        ``U`` and ``V``, shape (d, d) each.
    X : array_like, shape (n, 2)
        Integer index pairs.

    Returns
    -------
    ndarray, shape (n, 2 d^2)
    """
    params, X = checks.check_call(_THIS, config, params, X)
    n, d = X.shape[0], config.d
    J = np.zeros((n, 2, d, d))
    rows = np.arange(n)
    for slot, (name, sign) in enumerate((("U", 1.0), ("V", -1.0))):
        P = params[name]
        np.add.at(J, (rows, slot, X[:, 0]), sign * P[X[:, 1]])
        np.add.at(J, (rows, slot, X[:, 1]), sign * P[X[:, 0]])
    return J.reshape(n, 2 * d * d)


def bench_problem(size: dict) -> tuple[str, dict, dict]:
    """``dichotomy bench``'s problem of ``size`` ({"d"}): (dataset generator, its arguments, Config arguments)."""
    return "multiplication_table", {"d": size["d"], "train_fraction": 0.05}, {"alpha": 10.0}


def step_work(config: Config, n: int) -> tuple[int, int]:
    """The least work of one GD step on n observed entries: (bytes, FLOPs).

    FLOPs: the entries (2 n d) and the update (4 n d), multiply-adds counted twice.
    """
    return 0, 12 * n * config.d
