"""Late- and early-phase linear classifiers of the diagonal net (Corollaries 3.6, 3.7; docs/limits.md §4).

For the L = 2 diagonal net, min ||u||^2 + ||v||^2 s.t. y_i <u^2 - v^2, x_i> >= 1 equals
min ||w||_1 s.t. y_i <w, x_i> >= 1: the max-L1-margin classifier is the late-phase predictor. The early
phase's NTK is linear, K(x, x') = const * <x, x'>, so its predictor is the max-L2-margin classifier.
Neither has an intercept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import blocks, checks
from dichotomy.refimpl.limits import l1_programs, qp


@dataclass(frozen=True)
class LinearClassifier:
    """w (d,) with min_i y_i <w, x_i> = 1 at the optimum, with its margin, duality gap and solver counters.

    ``margin`` = min_i y_i <w, x_i> / ||w||_q for the problem's norm q; ``gap`` = relative duality gap of the
    solve; ``stats``: the solver's counters.
    """

    w: np.ndarray
    margin: float
    gap: float
    stats: dict = field(default_factory=dict)


def _check(X, y) -> tuple[np.ndarray, np.ndarray]:
    """X (n, d) real and finite, y (n,) in {-1, +1}; the solvers refuse n = 0 or d = 0 themselves."""
    X = checks.finite_array("X", X, ndim=2, real=True)
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or y.dtype.kind not in "biuf" or not np.all((y == 1) | (y == -1)):
        raise errors.ConfigError(f"labels must be {X.shape[0]} values in {{-1, +1}}, got shape {y.shape}")
    return X, y


def _signed_rows(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """diag(y) X, kept in X's dtype (exact for +-1 integer data)."""
    return X * y.astype(X.dtype)[:, None] if X.dtype.kind in "iu" else X * y[:, None]


def max_l1_margin(X, y) -> LinearClassifier:
    """argmin ||w||_1 s.t. y_i <w, x_i> >= 1 (LP by column generation); margin = 1 / ||w||_1."""
    X, y = _check(X, y)
    sol = l1_programs.min_l1(_signed_rows(X, y), np.ones(len(y)), equality=False)
    return LinearClassifier(sol.w, 1.0 / sol.norm, sol.gap, {"rounds": sol.rounds, "columns": sol.columns})


def max_l2_margin(X, y) -> LinearClassifier:
    """argmin ||w||_2 s.t. y_i <w, x_i> >= 1, the hard-margin SVM without intercept; margin = 1 / ||w||_2.

    Solved in the dual over the n x n Gram matrix (:func:`refimpl.limits.qp.hard_margin`); w = X^T (alpha y).
    """
    X, y = _check(X, y)
    A = _signed_rows(X, y)
    sol = qp.hard_margin(blocks.gram(A, A))
    return LinearClassifier(blocks.rmatvec(A, sol.alpha), sol.margin, sol.gap)
