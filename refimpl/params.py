"""Helpers over parameter dicts ``dict[str, ndarray]``, the package's one parameter format."""

from __future__ import annotations

import numpy as np


def flatten(params: dict[str, np.ndarray]) -> np.ndarray:
    """Concatenate every array, raveled in C order, in the dict's key order; shape (P,).

    Parameters
    ----------
    params : dict of str to ndarray
        Arrays of any shapes, P entries in all.

    Returns
    -------
    ndarray, shape (P,)
    """
    return np.concatenate([np.ravel(p) for p in params.values()])


def unflatten(vec: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`flatten`: split ``vec`` (P,) into arrays shaped like ``like``'s.

    Parameters
    ----------
    vec : ndarray, shape (P,)
    like : dict of str to ndarray
        Arrays of P entries in all; only their keys, order and shapes are used.

    Returns
    -------
    dict of str to ndarray
        The keys of ``like``, each array of its shape.
    """
    out, start = {}, 0
    for k, p in like.items():
        out[k] = np.reshape(vec[start:start + p.size], p.shape)
        start += p.size
    return out


def param_norm(params: dict[str, np.ndarray]) -> float:
    """The L2 norm of all parameters together, ||theta||_2.

    Parameters
    ----------
    params : dict of str to ndarray
        Arrays of any shapes, real or complex.

    Returns
    -------
    float
    """
    return float(np.sqrt(sum(np.vdot(p, p).real for p in params.values())))


def all_finite(params: dict[str, np.ndarray]) -> bool:
    """True when no parameter holds a NaN or inf.

    Parameters
    ----------
    params : dict of str to ndarray
        Arrays of any shapes.

    Returns
    -------
    bool
    """
    return all(np.all(np.isfinite(p)) for p in params.values())
