"""Quadratic programs over a Gram matrix, solved exactly by SciPy's active-set NNLS (docs/limits.md §1).

Every kernel-side problem of the paper is a quadratic program whose data is a Gram matrix G = Phi Phi^T of
m constraint gradients (rows of Phi, possibly 10^5-dimensional, never formed here):

- :func:`hard_margin` solves min 1/2 ||h||^2 s.t. Phi h >= 1 (problem K1, and the KKT problems' duals)
  as a least-distance program (Lawson & Hanson 1995, ch. 23), which is one NNLS in m unknowns;
- :func:`nonnegative_fit` solves min_{mu >= 0} ||theta - Phi^T mu||^2 given G and c = Phi theta.

Lawson-Hanson NNLS is an active-set method: it stops at an exact vertex of the KKT system, so the duality
gap is at rounding level (~1e-14), not at an interior-point tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from dichotomy.errors import ConfigError, DichotomyError
from dichotomy.refimpl import checks


class SolverFailed(DichotomyError, RuntimeError):
    """A solver stopped without a certified solution; the message says what to try."""


def gram_factor(G: np.ndarray, rtol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A = Q diag(sqrt(s)) with G ~= A A^T, dropping eigenvalues below ``rtol * max(s)``; A has shape (m, r).

    The default ``rtol`` is m * machine epsilon, the rounding level of the eigen-decomposition itself.
    Raises a ConfigError for a G that is not a finite, real, square matrix with at least one row.
    """
    return _factor(_check_gram(G), rtol)


def _factor(G: np.ndarray, rtol: float | None = None) -> np.ndarray:
    """:func:`gram_factor` of a G already checked by :func:`_check_gram`."""
    s, Q = scipy.linalg.eigh((G + G.T) / 2)
    rtol = G.shape[0] * np.finfo(float).eps if rtol is None else rtol
    keep = s > rtol * max(s.max(initial=0.0), np.finfo(float).tiny)
    return Q[:, keep] * np.sqrt(s[keep])


def _check_gram(G) -> np.ndarray:
    """G as float64 after checking it is a finite, real, square matrix with at least one row.

    At least one row, because SciPy's NNLS aborts the whole process on an empty problem.
    """
    G = np.asarray(G)
    if G.dtype.kind not in "biuf":
        raise ConfigError(f"a Gram matrix must hold real numbers, got dtype {G.dtype}")
    G = G.astype(np.float64, copy=False)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ConfigError(f"a Gram matrix must be square, got shape {G.shape}")
    if G.shape[0] == 0:
        raise ConfigError("the Gram matrix is empty (0 constraints): give at least one constraint (training sample)")
    if not np.all(np.isfinite(G)):
        raise ConfigError("the Gram matrix contains NaN or inf")
    return G


def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        import scipy.optimize  # here: 0.1 s of imports that only the solvers need

        return scipy.optimize.nnls(A, b, maxiter=50 * max(A.shape[1], 1))[0]
    except RuntimeError as e:  # iteration limit
        raise SolverFailed(f"NNLS did not converge ({e}); the problem is badly conditioned") from None


@dataclass(frozen=True)
class HardMargin:
    """Solution of min 1/2 ||h||^2 s.t. Phi h >= 1, with h = Phi^T alpha.

    ``alpha`` (m,) are the dual variables (>= 0, zero off the support vectors); ``norm_sq`` = ||h||^2 =
    alpha^T G alpha; ``margins`` = G alpha = Phi h (>= 1); ``gap`` = |1^T alpha - ||h||^2| / ||h||^2, the
    relative duality gap (primal 1/2 ||h||^2 against dual 1^T alpha - 1/2 alpha^T G alpha).
    """

    alpha: np.ndarray
    norm_sq: float
    margins: np.ndarray
    gap: float

    @property
    def margin(self) -> float:
        """The margin of the unit vector h / ||h||: min_i <phi_i, h> / ||h|| = 1 / ||h|| at the optimum."""
        return float(self.margins.min() / np.sqrt(self.norm_sq))


def hard_margin(G: np.ndarray) -> HardMargin:
    """Solve the hard-margin problem min 1/2 ||h||^2 s.t. <phi_i, h> >= 1 from G_ij = <phi_i, phi_j>.

    Least-distance programming: with G = A A^T (A (m, r)), minimize ||z|| s.t. A z >= 1. Let u >= 0 solve
    min ||E u - e||, E = [A^T; 1^T], e = (0, ..., 0, 1); the residual rho = E u - e gives z = -rho_{:r} /
    rho_r and the dual alpha = -u / rho_r. rho = 0 means no h satisfies the constraints.

    Raises
    ------
    ConfigError
        The constraints are infeasible (data not separable by the kernel's features).
    """
    G = _check_gram(G)
    A = _factor(G)
    m, r = A.shape
    E = np.vstack([A.T, np.ones((1, m))])
    e = np.zeros(r + 1)
    e[-1] = 1.0
    u = _nnls(E, e)
    rho = E @ u - e
    if -rho[-1] <= 1e-12 * max(1.0, np.abs(u).sum()):
        raise ConfigError(f"the {m} margin constraints are infeasible: no predictor in the kernel's feature "
                          "space separates the training data (Assumption 3.3 fails)")
    alpha = -u / rho[-1]
    margins = G @ alpha
    norm_sq = float(alpha @ margins)
    return HardMargin(alpha, norm_sq, margins, abs(alpha.sum() - norm_sq) / norm_sq)


def nonnegative_fit(G: np.ndarray, c: np.ndarray, extra_rows: np.ndarray | None = None) -> np.ndarray:
    """mu >= 0 minimizing ||theta - Phi^T mu||^2 + ||extra_rows @ mu||^2, given G = Phi Phi^T, c = Phi theta.

    ||theta - Phi^T mu||^2 = ||theta||^2 - ||z||^2 + ||A^T mu - z||^2 with G = A A^T and A z = c (c lies in
    the range of G), so this is one NNLS in m unknowns. ``extra_rows`` (k, m) adds penalties driven to 0.
    """
    G = _check_gram(G)
    m = G.shape[0]
    c = checks.finite_array("c", c, ndim=1, real=True)
    if c.shape != (m,):
        raise ConfigError(f"c must have one entry per constraint, {m}, got shape {c.shape}")
    if extra_rows is not None:
        extra_rows = checks.finite_array("extra_rows", extra_rows, ndim=2, real=True)
        if extra_rows.shape[1] != m:
            raise ConfigError(f"extra_rows must have {m} columns (one per constraint), got shape {extra_rows.shape}")
    A = _factor(G)
    z = scipy.linalg.lstsq(A, c)[0]
    rows, target = A.T, z
    if extra_rows is not None:
        rows = np.vstack([rows, extra_rows])
        target = np.concatenate([z, np.zeros(extra_rows.shape[0])])
    return _nnls(rows, target)
