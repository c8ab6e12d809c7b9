"""Early-phase predictors: the NTK hard-margin SVM (K1), min-norm interpolation (K2), linearized GD.

A kernel predictor is a tangent h at theta_bar: f_ker(x) = <grad f(theta_bar; x), h>, evaluated with the
model's forward-mode :func:`jvp`; h = sum_m coef_m grad q_m(theta_bar) comes from the model's backward pass.
Nothing of size (n, P) is formed for the diagonal net or the factorization (docs/limits.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import scipy.linalg

from dichotomy.errors import ConfigError
from dichotomy.refimpl import checks, losses
from dichotomy.refimpl.limits import ntk, qp

INTERPOLATION_RTOL = 1e-8  # K2: relative residual ||G coef - y|| / ||y|| accepted as an interpolation


@dataclass(frozen=True)
class KernelPredictor:
    """f_ker(x) = <grad f(theta_bar; x), h>.

    ``problem`` is ``"K1"`` (hard-margin SVM, classification) or ``"K2"`` (min-norm interpolation).
    ``coef`` (m,) are the dual coefficients of the m constraints; ``norm`` = ||h||; ``margin`` = gamma_ntk =
    1 / ||h|| for K1 (None for K2); ``accuracy`` = the duality gap (K1) or the relative interpolation
    residual (K2).
    """

    problem: str
    theta_bar: dict[str, np.ndarray]
    h: dict[str, np.ndarray]
    coef: np.ndarray
    norm: float
    margin: float | None
    accuracy: float

    def predict(self, module: ModuleType, config, X) -> np.ndarray:
        """f_ker on inputs X: shape (n,) or (n, out), like ``module.predict``."""
        return module.jvp(config, self.theta_bar, module.check_inputs(config, X), self.h)


def kernel_predictor(module: ModuleType, config, params0: dict[str, np.ndarray], X, y, loss: str,
                     ) -> KernelPredictor:
    """The NTK predictor the early phase converges to (Theorems 3.4 and 3.9), for initial params ``params0``.

    Classification losses (logistic, exponential, cross-entropy) give K1: min 1/2 ||h||^2 s.t.
    q_m(h) >= 1 for every margin (binary y_i f_i, or multiclass f_{i,y_i} - f_{i,c}), solved exactly by
    :func:`refimpl.limits.qp.hard_margin`. The squared loss gives K2: min 1/2 ||h||^2 s.t. f_i(h) = y_i.

    Raises
    ------
    ConfigError
        Invalid params, inputs or targets (:func:`refimpl.checks.model_data`), K1 infeasible
        (Assumption 3.3) or K2 without an interpolant (Assumption 3.8).
    """
    params0, X, y = checks.model_data(module, config, params0, X, y, loss)
    theta_bar = ntk.unit_init(module, config, params0)
    D, G = ntk.constraint_gram(module, config, theta_bar, X, y, loss)
    if losses.task_of(loss) == "regression":
        target = np.asarray(y, dtype=np.float64).ravel()
        coef = scipy.linalg.lstsq(G, target)[0]
        residual = np.linalg.norm(G @ coef - target) / max(np.linalg.norm(target), np.finfo(float).tiny)
        if residual > INTERPOLATION_RTOL:
            raise ConfigError(f"the NTK features cannot interpolate the targets (relative residual {residual:.2e}):"
                              " Assumption 3.8 (linearly independent features) fails")
        norm_sq, margin, accuracy = float(coef @ G @ coef), None, float(residual)
    else:
        sol = qp.hard_margin(G)
        coef, norm_sq, margin, accuracy = sol.alpha, sol.norm_sq, sol.margin, sol.gap
    h = ntk.vjp(module, config, theta_bar, X, D, coef)
    return KernelPredictor("K2" if margin is None else "K1", theta_bar, h, coef, float(np.sqrt(norm_sq)),
                           margin, accuracy)


def linearized_gd(module: ModuleType, config, params0: dict[str, np.ndarray], X, y, *, lr: float, wd: float,
                  steps, X_test=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs of GD on the model linearized at theta_0 = ``params0``, squared loss, coupled weight decay.

    f_lin(theta; x) = <grad f(theta_0; x), theta - theta_0> (f(theta_0) = 0, Assumption 3.2), trained by
    theta <- theta - lr ((2/n) J^T (f - y) + wd theta). Since J theta_0 = L f(theta_0) = 0 the outputs are
    f_s = K beta_s with beta_{s+1} = ((1 - lr wd) I - (2 lr / n) K) beta_s + (2 lr / n) y, beta_0 = 0, which
    in the eigenbasis K = Q diag(k) Q^T is beta_s = Q diag((1 - rho^s) / (1 - rho)) Q^T (2 lr / n) y with
    rho = 1 - lr wd - 2 lr k / n (docs/limits.md §3.3).

    Parameters
    ----------
    lr, wd : float
        Learning rate (finite, > 0) and weight decay (finite, >= 0).
    steps : int or 1-D array of int
        The steps s at which to return the outputs, integers in [0, :data:`refimpl.checks.MAX_STEPS`].
    X_test : array, optional
        Inputs at which to also return f_s (through K(X_test, X) beta_s).

    Returns
    -------
    f_train : (len(steps), n), f_test : (len(steps), n_test) or None

    Raises
    ------
    ConfigError
        Invalid arguments, f(theta_0) != 0, or lr at or above the stability limit 2 / (wd + 2 k_max / n).
    """
    lr = checks.positive("learning rate lr", lr)
    wd = checks.positive("weight decay wd", wd, allow_zero=True)
    steps = _step_list(steps)
    params0, X, y = checks.model_data(module, config, params0, X, y, "squared")
    if X_test is not None:
        X_test = module.check_inputs(config, X_test)
    y = np.asarray(y, dtype=np.float64)
    f0 = module.forward(config, params0, X)[0]  # checked above
    if f0.ndim != 1 or y.shape != f0.shape:
        raise ConfigError(f"linearized_gd needs one output per input and targets of shape {f0.shape}, got {y.shape}")
    if np.abs(f0).max(initial=0.0) > 1e-12 * max(1.0, np.abs(y).max(initial=0.0)):
        raise ConfigError("linearized_gd assumes f(theta_0) = 0 (Assumption 3.2): zero the last layer or use a "
                          "symmetric init")
    n = y.size
    K = ntk.gram(module, config, params0, X)
    k, Q = scipy.linalg.eigh(K)
    rho = 1.0 - lr * wd - 2.0 * lr * np.maximum(k, 0.0) / n  # <= 1 for lr > 0, wd >= 0; = 1 on K's null space
    if np.any(rho <= -1.0):  # some mode oscillates with a growing amplitude
        raise ConfigError(f"lr={lr:g} is too large for the linearized dynamics: need lr < 2 / (wd + 2 k_max / n) = "
                          f"{2.0 / (wd + 2.0 * k.max() / n):.3g}")
    gain = np.where(rho == 1.0, steps[:, None], (1.0 - rho ** steps[:, None]) / np.where(rho == 1.0, 1.0, 1.0 - rho))
    beta = (gain * (Q.T @ y) * (2.0 * lr / n)) @ Q.T  # (len(steps), n): beta_s in the sample basis
    f_train = beta @ K
    f_test = None if X_test is None else beta @ ntk.gram(module, config, params0, X_test, X).T
    return f_train, f_test


def _step_list(steps) -> np.ndarray:
    """``steps`` as int64, each checked by :func:`refimpl.checks.step_count`.

    ``steps`` is an int or a 1-D sequence of ints; whole floats such as 10.0 count as ints, like ``record`` in
    :func:`dichotomy.run.driver.run`.
    """
    s = np.atleast_1d(np.asarray(steps))
    if s.ndim != 1:
        raise ConfigError(f"steps must be an int or a 1-D sequence of ints, got shape {s.shape}")
    whole = [int(v) if isinstance(v, float) and v.is_integer() else v for v in s.tolist()]
    return np.array([checks.step_count("steps", v) for v in whole], dtype=np.int64)
