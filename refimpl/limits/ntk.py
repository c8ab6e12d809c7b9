"""The neural tangent kernel at the unit-scale initialization theta_bar (paper §3.1; docs/limits.md §2).

theta(0) = alpha * theta_bar, and the NTK features are grad f(theta_bar; x) (by homogeneity grad f at
alpha * theta_bar is alpha^{L-1} times this, the same direction). The Gram matrices are closed forms for the
diagonal net and the factorization, and products of the hand-written Jacobian for the ReLU MLP.

Every problem of :mod:`refimpl.limits` is written with a sparse *constraint matrix* D acting on the
flattened outputs f (n * out,): constraint values q = D f and constraint gradients D J.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import scipy.sparse as sp

from dichotomy.errors import ConfigError
from dichotomy.refimpl import losses

MAX_BYTES = 1 << 30  # the largest Gram matrix formed; beyond, a one-line ConfigError


def scale_of(module: ModuleType, config) -> float:
    """The init scale alpha with theta(0) = alpha * theta_bar: the model's own ``init_scale``.

    The model's ``SCALE_CONVENTION`` says how theta_bar is normalized.
    """
    return module.init_scale(config)


def unit_init(module: ModuleType, config, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """theta_bar = theta(0) / alpha for the initial parameters ``params`` (see :func:`scale_of`)."""
    alpha = scale_of(module, config)
    if alpha <= 0:
        raise ConfigError("the NTK at the unit-scale init needs an init scale alpha > 0")
    return {k: p / alpha for k, p in params.items()}


def gram(module: ModuleType, config, params, X1, X2=None) -> np.ndarray:
    """NTK Gram K(X1, X2) = J(X1) J(X2)^T at ``params`` (the model's ``ntk_gram``).

    Shape (n1, n2), or (n1, out, n2, out) for a model with several outputs.

    Pass theta_bar (:func:`unit_init`) for the paper's NTK; any params give the tangent kernel there. At theta(0) =
    alpha theta_bar its entries grow as alpha^(2(L-1)) and leave float64 near alpha = 1e154 (L = 2): a Gram that is
    not finite is a one-line ConfigError, never an inf (docs/limits.md §2).
    """
    X1 = module.check_inputs(config, X1)
    X2 = X1 if X2 is None else module.check_inputs(config, X2)
    out = module.n_outputs(config)
    need = 8 * len(X1) * len(X2) * out * out
    if need > MAX_BYTES:
        raise ConfigError(f"the NTK Gram of {len(X1)} x {len(X2)} inputs ({out} outputs each) would take "
                          f"{need / 2**30:.1f} GiB; use fewer inputs")
    with np.errstate(over="ignore", invalid="ignore"):
        K = module.ntk_gram(config, params, X1, X2)
    if not np.all(np.isfinite(K)):
        raise ConfigError(f"the NTK Gram at these parameters is not finite in float64 (its entries grow as "
                          f"alpha^(2(L-1)), alpha = {scale_of(module, config):.3g}): take it at the unit-scale init "
                          "(ntk.unit_init), as the kernel predictors do")
    return K


def constraint_matrix(task: str, y: np.ndarray, out: int = 1) -> sp.csr_array:
    """D with constraint values q = D f_flat for outputs f (n, out) flattened in C order.

    ``binary``: q_i = y_i f_i (m = n). ``multiclass``: q_(i,c) = f_(i,y_i) - f_(i,c) for every c != y_i
    (m = n (out - 1), the multiclass margins). ``regression``: D = I (m = n * out).
    """
    y = np.asarray(y)
    n = y.shape[0]
    if task == "binary":
        return sp.csr_array(sp.diags_array(y.astype(np.float64)))
    if task == "regression":
        return sp.csr_array(sp.eye_array(n * out))
    if out < 2:
        raise ConfigError("multiclass margins need at least 2 outputs")
    i = np.repeat(np.arange(n), out - 1)
    others = np.array([[c for c in range(out) if c != yi] for yi in y]).ravel()
    rows = np.arange(i.size)
    data = np.concatenate([np.ones(i.size), -np.ones(i.size)])
    cols = np.concatenate([i * out + np.repeat(y, out - 1), i * out + others])
    return sp.csr_array((data, (np.concatenate([rows, rows]), cols)), shape=(i.size, n * out))


def constraint_gram(module: ModuleType, config, params, X, y, loss: str) -> tuple[sp.csr_array, np.ndarray]:
    """D and the Gram D K D^T of the constraint gradients grad q_m = sum_k D_mk grad f_k at ``params``."""
    K = gram(module, config, params, X)
    out = 1 if K.ndim == 2 else K.shape[1]
    K = K.reshape(X.shape[0] * out, -1)
    D = constraint_matrix(losses.task_of(loss), y, out)
    return D, D @ (D @ K).T


def vjp(module: ModuleType, config, params, X, D: sp.csr_array, coef: np.ndarray) -> dict[str, np.ndarray]:
    """sum_m coef_m grad q_m(params): the model's backward pass with output cotangent D^T coef."""
    f, cache = module.forward(config, params, X)
    return module.backward(config, params, cache, (D.T @ coef).reshape(f.shape))

