"""min ||w||_1 s.t. A w >= b or A w = b, for d up to 10^5 and beyond, by column generation (docs/limits.md §4).

Both late-phase predictors of the diagonal net are this linear program: the max-L1-margin classifier
(A = diag(y) X, b = 1, ">=") and the min-L1 interpolant (A = X, b = y, "="). Writing w = p - q with p, q >= 0,
the LP's dual is max b^T mu s.t. |A^T mu|_inf <= 1 (mu >= 0 for ">="), so column j may improve the
objective only if |A^T mu|_j > 1. The L1 solution is sparse (at most n non-zeros), so HiGHS solves the
program restricted to a few hundred columns while one pass over A per round prices all d of them; A is
never densified (+-1 int8 data stay int8). The loop stops when no column prices out: mu is then feasible
for the full dual and b^T mu certifies the optimum (the duality gap reported).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.refimpl import blocks
from dichotomy.refimpl.limits.qp import SolverFailed

_HIGHS_OPTIONS = {"output_flag": False, "presolve": "off", "primal_feasibility_tolerance": 1e-10,
                  "dual_feasibility_tolerance": 1e-10}
PRICE_TOL = 1e-9  # a column enters when |A^T mu|_j > 1 + PRICE_TOL


@dataclass(frozen=True)
class L1Solution:
    """w (d,) minimizing ||w||_1, with its dual, duality gap and pricing counts.

    ``dual`` mu (n,); ``gap`` = relative duality gap; ``rounds`` of pricing; ``columns`` = size of the final
    restricted program.
    """

    w: np.ndarray
    dual: np.ndarray
    gap: float
    rounds: int
    columns: int

    @property
    def norm(self) -> float:
        return float(np.abs(self.w).sum())


def _highspy():
    """The HiGHS module, imported on first use (``dichotomy --help`` never needs it)."""
    import highspy

    return highspy


def _silent_highs():
    """A HiGHS instance with logging off.

    HiGHS prints a banner from C++ the first time one is made in a process, before any option can be set; file
    descriptor 1 is pointed at /dev/null for that moment only.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = _highspy().Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    for key, value in _HIGHS_OPTIONS.items():
        h.setOptionValue(key, value)
    return h


class _RestrictedProgram:
    """The LP over a growing set of columns, re-solved warm by HiGHS's simplex after each addition."""

    def __init__(self, A: np.ndarray, b: np.ndarray, equality: bool):
        self.A, self.h = A, _silent_highs()
        self.columns = np.zeros(0, dtype=np.int64)  # coordinate j of each LP variable (p_j, then q_j)
        self.signs = np.zeros(0)  # +1 for p_j, -1 for q_j
        n = A.shape[0]
        upper = b if equality else np.full(n, _highspy().kHighsInf)
        self.h.addRows(n, b, upper, 0, np.zeros(n, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0))

    def add(self, J: np.ndarray) -> None:
        """Add w_j = p_j - q_j for the columns J: 2 |J| non-negative variables of cost 1."""
        n = self.A.shape[0]
        block = self.A[:, J].astype(np.float64)
        values = np.concatenate([block.T.ravel(), -block.T.ravel()])
        k = 2 * len(J)
        self.h.addCols(k, np.ones(k), np.zeros(k), np.full(k, _highspy().kHighsInf), values.size,
                       np.arange(0, values.size, n, dtype=np.int32), np.tile(np.arange(n, dtype=np.int32), k), values)
        self.columns = np.concatenate([self.columns, J, J])
        self.signs = np.concatenate([self.signs, np.ones(len(J)), -np.ones(len(J))])

    def solve(self):
        """(w (d,), row duals mu), or None if the restricted program is infeasible."""
        self.h.run()
        status = self.h.getModelStatus()
        if status == _highspy().HighsModelStatus.kInfeasible:
            return None
        if status != _highspy().HighsModelStatus.kOptimal:
            raise SolverFailed(f"HiGHS stopped on the restricted L1 program: {self.h.modelStatusToString(status)}")
        sol = self.h.getSolution()
        w = np.zeros(self.A.shape[1])
        np.add.at(w, self.columns, self.signs * np.asarray(sol.col_value))
        return w, np.asarray(sol.row_dual)


SUPPORT_TOL = 1e-9  # |w_j| <= SUPPORT_TOL * max|w| is simplex round-off, not support (docs/limits.md §4)


def _polish(A: np.ndarray, b: np.ndarray, w: np.ndarray, equality: bool) -> np.ndarray:
    """The simplex's w with round-off cleaned and the support's values re-solved.

    Entries below SUPPORT_TOL * max|w| are set to 0, then the support's values re-solved from the tight
    constraints (A_TJ w_J = b_T) by least squares, so the vertex is exact to rounding. The re-solve is kept only
    if it keeps every sign and every constraint; else the cleaned w is.
    """
    top = np.abs(w).max(initial=0.0)
    w = np.where(np.abs(w) > SUPPORT_TOL * top, w, 0.0)
    J = np.flatnonzero(w)
    if J.size == 0:
        return w
    AJ = np.asarray(A[:, J], dtype=np.float64)
    q = AJ @ w[J]
    tight = np.ones(len(b), bool) if equality else np.abs(q - b) <= 1e-8 * np.maximum(1.0, np.abs(b))
    sol = np.linalg.lstsq(AJ[tight], b[tight], rcond=None)[0]
    q2 = AJ @ sol
    slack = 1e-12 * np.maximum(1.0, np.abs(b))
    feasible = np.all(np.abs(q2 - b) <= slack) if equality else np.all(q2 >= b - slack)
    ok = feasible and np.all(np.sign(sol) == np.sign(w[J]))
    if ok and np.abs(sol).sum() <= np.abs(w[J]).sum() * (1 + 1e-12):
        w = w.copy()
        w[J] = sol
    return w


def min_l1(A: np.ndarray, b: np.ndarray, *, equality: bool, max_rounds: int = 200) -> L1Solution:
    """min ||w||_1 s.t. A w = b (``equality``) or A w >= b, by column generation over the d columns of A.

    Raises
    ------
    ConfigError
        A has no rows or no columns, or no w satisfies the constraints (non-separable data, or an inconsistent
        system).
    """
    n, d = A.shape
    if n == 0 or d == 0:  # HiGHS cannot be given an empty program
        raise ConfigError(f"the L1 program is empty: A (the data X, one row per sample) has shape {A.shape}; give at "
                          "least one sample and one feature")
    b = np.asarray(b, dtype=np.float64)
    score = np.abs(blocks.rmatvec(A, b))
    order = np.argsort(-score, kind="stable")
    size = min(d, max(2 * n, 64))
    program = _RestrictedProgram(A, b, equality)
    program.add(order[:size])
    for rounds in range(1, max_rounds + 1):
        sol = program.solve()
        if sol is None:  # too few columns to satisfy the constraints: take the next best-scored ones
            if size == d:
                kind = "A w = b has no solution" if equality else "the data are not linearly separable"
                raise ConfigError(f"the L1 program is infeasible: {kind}")
            program.add(order[size:min(d, 2 * size)])
            size = min(d, 2 * size)
            continue
        w, mu = sol
        v = blocks.rmatvec(A, mu)
        excess = np.abs(v) - 1.0
        excess[program.columns] = -np.inf
        enter = np.flatnonzero(excess > PRICE_TOL)
        if enter.size == 0:
            w = _polish(A, b, w, equality)
            primal = np.abs(w).sum()
            dual = (b @ mu) / max(1.0, np.abs(v).max())  # mu scaled into the dual feasible set
            return L1Solution(w, mu, abs(primal - dual) / max(primal, np.finfo(float).tiny), rounds,
                              len(program.columns) // 2)
        program.add(enter[np.argsort(-excess[enter])[: max(n, 32)]])
    raise SolverFailed(f"column generation did not converge in {max_rounds} rounds "
                      f"({len(program.columns) // 2} columns)")
