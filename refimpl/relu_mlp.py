"""Homogeneous ReLU MLP of depth L with a first-layer bias only (paper §2; docs/math.md §4).

f(x) = W_L relu(... relu(W_2 relu(W_1 x + b_1))). Scaling every parameter, b_1 included, by c scales f by
c^L, so the net is L-homogeneous. Parameters use nn.Linear's (out, in) shapes:
``W1`` (h, D), ``b1`` (h,), ``W2`` ... ``W{L-1}`` (h, h), ``W{L}`` (out, h).
The ReLU derivative at 0 is taken as 0, as in PyTorch.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import checks, objective

NAME = "relu-mlp"  # the model's one name: registry key, CLI argument, trajectory field
INPUTS = "features"  # rows of X are feature vectors
SCALE_CONVENTION = "theta(0) = alpha x He init, alpha = init_scale"
MAX_JACOBIAN_BYTES = 1 << 30  # the largest Jacobian ntk_gram forms; beyond, a one-line ConfigError
# What the layers above ask of this model (plain data: the oracle imports nothing above it).
QUICK_PRESET = "fig2a-quick"  # what `dichotomy train` runs when no --preset is given
STANDARD_LOSS = "cross_entropy"  # the loss of its standard problems (peer timing)
SMALL_PROBLEM = {"dataset": "modular_arithmetic", "data": {"p": 7, "train_fraction": 0.5},
                 "model": {"h": 16, "L": 2}, "lr": 0.1, "wd": 1e-3}  # crosscheck, golden files
_THIS = sys.modules[__name__]  # for the shared argument checks (checks.check_call)


@dataclass(frozen=True)
class Config:
    """Input width ``D``, hidden width ``h``, outputs ``out``, depth ``L``, He-init multiplier, zero last layer."""

    D: int
    h: int
    out: int
    L: int = 2
    init_scale: float = 1.0
    zero_last_layer: bool = False

    def __post_init__(self):
        checks.positive_int("D", self.D)
        checks.positive_int("width h", self.h)
        checks.positive_int("out", self.out)
        checks.positive_int("depth L", self.L, minimum=2)
        checks.config_number("init_scale", self.init_scale, allow_zero=True)
        checks.config_flag("zero_last_layer", self.zero_last_layer)


def degree(config: Config) -> int:
    """The homogeneity degree: every parameter, b1 included, scaled by c scales f by c^L."""
    return config.L


def init_scale(config: Config) -> float:
    """alpha with theta(0) = alpha * theta_bar, theta_bar = He init: ``init_scale``."""
    return float(config.init_scale)


def n_outputs(config: Config) -> int:
    """Outputs (logits) per input."""
    return config.out


def config_for(data, **model_args) -> Config:
    """The Config of ``model_args`` with D = input width and ``out`` = the number of classes from the dataset.

    ``out`` is ``info["p"]`` for modular arithmetic; else 1 for binary or regression targets, max label + 1 for
    cross-entropy.
    """
    D = int(np.shape(data.X_train)[1])
    if "p" in data.info:
        out = int(data.info["p"])
    elif data.loss == "cross_entropy":
        out = int(max(np.max(data.y_train, initial=0), np.max(data.y_test, initial=0))) + 1
    else:
        out = 1
    return Config(D=D, out=out, **model_args)


def late_limit(config: Config, task: str) -> str | None:
    """No convex form of (R1)/(R2) for a ReLU net: the late phase is checked by KKT residuals instead."""
    return None


def ntk_gram(config: Config, params, X1, X2) -> np.ndarray:
    """J(X1) J(X2)^T from the hand-written Jacobian; shape (n1, out, n2, out) (docs/limits.md §2).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        Shaped as :func:`shapes`.
    X1 : ndarray, shape (n1, D)
    X2 : ndarray, shape (n2, D)

    Returns
    -------
    ndarray, shape (n1, out, n2, out)
    """
    P = sum(math.prod(s) for s in shapes(config).values())
    need = 8 * P * config.out * (len(X1) + (0 if X2 is X1 else len(X2)))
    if need > MAX_JACOBIAN_BYTES:
        raise errors.ConfigError(f"the ReLU MLP's NTK Gram needs a {need / 2**30:.1f} GiB Jacobian ({len(X1)} "
                                 f"inputs x {config.out} outputs x {P} parameters); use fewer inputs or a narrower net")
    J1 = ntk_features(config, params, X1)
    J2 = J1 if X2 is X1 else ntk_features(config, params, X2)
    return np.einsum("iap,jbp->iajb", J1, J2, optimize=True)


def shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes in the order used everywhere (W1, b1, W2, ..., WL)."""
    out = {"W1": (config.h, config.D), "b1": (config.h,)}
    for layer in range(2, config.L + 1):
        out[f"W{layer}"] = (config.out if layer == config.L else config.h, config.h)
    return out


def init(config: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He (kaiming_normal_, fan_in) init times ``init_scale``.

    std sqrt(2/fan_in) for hidden layers, relu gain; std sqrt(1/fan_in) for the last, linear gain; b1 = 0; the
    last layer zeroed if ``zero_last_layer``.

    Parameters
    ----------
    config : Config
    rng : numpy.random.Generator

    Returns
    -------
    dict of ndarray
        ``W1`` (h, D), ``b1`` (h,), ``W2`` ... ``W{L-1}`` (h, h), ``W{L}`` (out, h), float64.
    """
    if not isinstance(rng, np.random.Generator):
        raise errors.ConfigError("relu_mlp.init draws random weights: pass rng=np.random.default_rng(seed)")
    params = {}
    for name, shape in shapes(config).items():
        if name == "b1":
            params[name] = np.zeros(shape)
            continue
        gain = 1.0 if name == f"W{config.L}" else 2.0
        params[name] = config.init_scale * math.sqrt(gain / shape[1]) * rng.standard_normal(shape)
    if config.zero_last_layer:
        params[f"W{config.L}"] = np.zeros_like(params[f"W{config.L}"])
    return params


def check_inputs(config: Config, X) -> np.ndarray:
    """X must be a finite (n, D) numeric array.

    Parameters
    ----------
    config : Config
    X : array_like, shape (n, D)
        Real.

    Returns
    -------
    ndarray, shape (n, D)
        ``np.asarray(X)``, its dtype kept.
    """
    X = checks.finite_array("X", X, ndim=2, real=True)
    if X.shape[1] != config.D:
        raise errors.ConfigError(f"X has {X.shape[1]} columns but the MLP has input width D={config.D}")
    return X


def forward(config: Config, params, X, pattern=None):
    """Logits (n, out) and the cache (activations a_0 = X, ..., a_{L-1}; pre-activations z_1..z_{L-1}).

    Unchecked: the engine's per-step path (use :func:`predict` on untrusted input).

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        Shaped as :func:`shapes`.
    X : ndarray, shape (n, D)
    pattern : list of ndarray, optional
        Pre-activations of another point (a cache's second list): the ReLUs then gate by ``pattern > 0``, not by
        z > 0, and the cache carries ``pattern``, so :func:`backward` differentiates the smooth piece of the network
        that point sits on (what :mod:`refimpl.sharpness` differentiates twice).

    Returns
    -------
    f : ndarray, shape (n, out)
    cache : tuple of two lists of ndarray
        The activations a_0 = X (n, D), a_1 ... a_{L-1} (n, h), and the pre-activations z_1 ... z_{L-1} (n, h).
    """
    a, acts, pre = X, [X], []
    for layer in range(1, config.L):
        z = a @ params[f"W{layer}"].T
        if layer == 1:
            z = z + params["b1"]
        a = np.maximum(z, 0.0) if pattern is None else z * (pattern[layer - 1] > 0)
        pre.append(z if pattern is None else pattern[layer - 1])
        acts.append(a)
    return a @ params[f"W{config.L}"].T, (acts, pre)


def predict(config: Config, params, X) -> np.ndarray:
    """Logits f(theta; x_i) for every row of X (n, D); shape (n, out).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        Shaped as :func:`shapes`.
    X : array_like, shape (n, D)

    Returns
    -------
    ndarray, shape (n, out)
    """
    params, X = checks.check_call(_THIS, config, params, X)
    return forward(config, params, X)[0]


def backward(config: Config, params, cache, g: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient of sum_ik g_ik f_ik by backpropagation (docs/math.md §4.1); g has shape (n, out).

    Unchecked, like :func:`forward`.

    Parameters
    ----------
    config : Config
    params : dict of ndarray
        Shaped as :func:`shapes`.
    cache : tuple
        From :func:`forward` on the same params.
    g : ndarray, shape (n, out)
        The output cotangent.

    Returns
    -------
    dict of ndarray
        Keyed and shaped as :func:`shapes`.
    """
    acts, pre = cache
    grads = {}
    delta = g
    for layer in range(config.L, 0, -1):
        grads[f"W{layer}"] = delta.T @ acts[layer - 1]
        if layer == 1:
            grads["b1"] = delta.sum(axis=0)
        else:
            delta = (delta @ params[f"W{layer}"]) * (pre[layer - 2] > 0)
    return {k: grads[k] for k in shapes(config)}


def jvp(config: Config, params, X, tangent) -> np.ndarray:
    """Directional derivative of the logits along ``tangent`` by forward-mode differentiation; (n, out).

    z_l = W_l a_{l-1} (+ b_1), dz_l = T_l a_{l-1} + W_l da_{l-1} (+ T_b1), da_l = relu'(z_l) dz_l.

    Parameters
    ----------
    config : Config
    params, tangent : dict of array_like
        Shaped as :func:`shapes`; ``tangent`` holds the directions T_l and T_b1.
    X : array_like, shape (n, D)

    Returns
    -------
    ndarray, shape (n, out)
    """
    params, X, tangent = checks.check_call(_THIS, config, params, X, tangent)
    a, da = X, np.zeros_like(X, dtype=np.result_type(X, tangent["W1"]))
    for layer in range(1, config.L + 1):
        W, T = params[f"W{layer}"], tangent[f"W{layer}"]
        z, dz = a @ W.T, a @ T.T + da @ W.T
        if layer == 1:
            z, dz = z + params["b1"], dz + tangent["b1"]
        if layer == config.L:
            return dz
        a, da = np.maximum(z, 0.0), dz * (z > 0)


def loss_and_grad(config: Config, params, X, y, loss: str):
    """Mean loss over (X, y) and its gradient, shaped like ``params`` (:func:`refimpl.objective.loss_and_grad`).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        Shaped as :func:`shapes`.
    X : array_like, shape (n, D)
    y : array_like, shape (n,) or (n, out)
        Targets of ``loss``: labels (n,) for classification, (n,) or (n, out) for ``squared``.
    loss : str

    Returns
    -------
    value : float
    grad : dict of ndarray
        Keyed and shaped as :func:`shapes`.
    """
    return objective.loss_and_grad(_THIS, config, params, X, y, loss)


def ntk_features(config: Config, params, X) -> np.ndarray:
    """Jacobian of every output, by one backward pass per (sample, output); shape (n, out, P).

    P is the total parameter count, flattened in :func:`shapes` order (refimpl.params.flatten).

    Parameters
    ----------
    config : Config
    params : dict of array_like
        Shaped as :func:`shapes`.
    X : array_like, shape (n, D)

    Returns
    -------
    ndarray, shape (n, out, P)
    """
    params, X = checks.check_call(_THIS, config, params, X)
    n = X.shape[0]
    J = np.empty((n, config.out, sum(math.prod(s) for s in shapes(config).values())))
    for i in range(n):
        _, cache = forward(config, params, X[i:i + 1])
        for k in range(config.out):
            g = np.zeros((1, config.out))
            g[0, k] = 1.0
            J[i, k] = np.concatenate([a.ravel() for a in backward(config, params, cache, g).values()])
    return J


def bench_problem(size: dict) -> tuple[str, dict, dict]:
    """``dichotomy bench``'s problem of ``size`` ({"p", "h"}): (dataset generator, its arguments, Config arguments)."""
    return "modular_arithmetic", {"p": size["p"], "train_fraction": 0.4}, {"h": size["h"]}


def step_work(config: Config, n: int) -> tuple[int, int]:
    """The least work of one GD step on n examples: (bytes, FLOPs).

    FLOPs: the three products of the output layer (3 n h out multiply-adds; the first layer of two-hot inputs is
    a gather).
    """
    return 0, 6 * n * config.h * config.out
