"""The gradient flow, compiled: refimpl/flow.py's integrator over a model's compiled field (twin of refimpl/flow.py).

:func:`bs3` advances one run by many accepted steps in one call, with no Python between them: the
Bogacki-Shampine 3(2) pair with FSAL, the PI controller and the norm-wise error test of :mod:`refimpl.flow`,
the same constants, the same landing rule. It takes the model's field as a compiled function,
``field(y, out, args)`` writing out = -(grad L(y) + wd y) for flat float64 parameters y (P,), or NaNs where the
loss is not finite; the fields below reuse the models' compiled pieces. Norms and sums are reassociated, so
numbers differ from the reference's by rounding.

:class:`NumbaFlowEngine` is the engine (:class:`refimpl.flow_engine.FlowRuns`): one compiled field per model, the
numba GD engine of the model holding the current parameters for the metrics and outputs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dichotomy.errors import FlowFailed
from dichotomy.kernels.numba import losses as klosses
from dichotomy.kernels.numba import matrix_factorization as kmf
from dichotomy.kernels.numba.diagonal_net import FASTMATH, DiagonalNetEngine, power
from dichotomy.kernels.numba.matrix_factorization import MatrixFactorizationEngine
from dichotomy.refimpl import diagonal_net, matrix_factorization
from dichotomy.refimpl import flow as rflow
from dichotomy.refimpl.flow_engine import FlowRuns
from dichotomy.refimpl.params import flatten, unflatten
from dichotomy.refimpl.steppers import Flow

B1, B2, B3 = rflow.B
E1, E2, E3, E4 = rflow.E
ORDER, SAFETY, GROW_MAX, SHRINK_MIN = rflow.ORDER, rflow.SAFETY, rflow.GROW_MAX, rflow.SHRINK_MIN
BETA1, BETA2 = rflow.BETA1, rflow.BETA2
TINY = np.finfo(np.float64).tiny
# what bs3 returns
GOING, NOT_FINITE, ERROR_FAILS = 0, 1, 2


@njit(cache=True)
def _norm(v):
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * v[i]
    return math.sqrt(s)


@njit(cache=True)
def _finite(v):
    for i in range(v.shape[0]):
        if not math.isfinite(v[i]):
            return False
    return True


@njit(cache=True)
def bs3(field, args, y, k1, k2, k3, k4, ynew, ytmp, scal, counts, t_end, max_steps, rtol, h_min, max_rejections):
    """Advance (y, k1) toward ``t_end`` by at most ``max_steps`` accepted steps (refimpl.flow.advance_to).

    ``scal`` = [t, h, err_prev] and ``counts`` = [grad_evals, accepted, rejected, rejections in a row] are read
    and updated in place. Returns :data:`GOING` (landed, or ``max_steps`` taken) or, on a collapse,
    :data:`NOT_FINITE` / :data:`ERROR_FAILS` with the state as it stood (the failed step's size in ``scal[1]``).
    """
    n = y.shape[0]
    in_a_row, taken = 0, 0
    while scal[0] < t_end and taken < max_steps:
        t, h = scal[0], scal[1]
        last = t + h >= t_end
        if last:
            h = t_end - t
        for i in range(n):
            ytmp[i] = y[i] + (h / 2) * k1[i]
        field(ytmp, k2, args)
        for i in range(n):
            ytmp[i] = y[i] + (3 * h / 4) * k2[i]
        field(ytmp, k3, args)
        for i in range(n):
            ynew[i] = y[i] + h * (B1 * k1[i] + B2 * k2[i] + B3 * k3[i])
        field(ynew, k4, args)
        counts[0] += 3
        for i in range(n):
            ytmp[i] = h * (E1 * k1[i] + E2 * k2[i] + E3 * k3[i] + E4 * k4[i])
        finite = _finite(ytmp) and _finite(ynew)
        err = math.inf
        if finite:
            err = _norm(ytmp) / (rtol * max(_norm(y), _norm(ynew), TINY))
        if err <= 1.0:
            scal[0] = t_end if last else t + h
            for i in range(n):
                y[i] = ynew[i]
                k1[i] = k4[i]
            counts[1] += 1
            in_a_row = 0
            taken += 1
            factor = min(GROW_MAX, max(SHRINK_MIN, SAFETY * max(err, 1e-10) ** -BETA1 * scal[2] ** BETA2))
            scal[2] = max(err, 1e-4)
            if not last:
                scal[1] = h * factor
            continue
        counts[2] += 1
        in_a_row += 1
        counts[3] = in_a_row
        scal[1] = h * (max(SHRINK_MIN, SAFETY * err ** (-1 / ORDER)) if finite else SHRINK_MIN)
        if scal[1] < h_min * max(1.0, scal[0]) or in_a_row > max_rejections:
            return ERROR_FAILS if finite else NOT_FINITE
    return GOING


# -- the fields ---------------------------------------------------------------------------------------------------

@njit(cache=True)
def _fill_nan(out):
    for i in range(out.shape[0]):
        out[i] = math.nan


COLUMNS = 2048  # columns of X per task of the field's X^T g: a row's piece is contiguous, the sums vectorize


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def diagonal_net_field(y, out, args):
    """-(grad L + wd theta) of the diagonal net, theta = (u, v): f = X (u^L - v^L), grad_u = L u^(L-1) X^T g.

    X^T g is formed by column blocks, each task reading its block row by row (contiguous, vectorized), so that
    its sums do not depend on the thread count.
    """
    X, target, code, L, wd, f, g, w = args
    n, d = X.shape
    Y, D = y.reshape((2, d)), out.reshape((2, d))
    u, v = Y[0], Y[1]
    for j in prange(d):
        w[j] = power(u[j], L) - power(v[j], L)
    for i in prange(n):
        s = 0.0
        for j in range(d):
            s += X[i, j] * w[j]
        f[i] = s
    if not math.isfinite(klosses.scalar_value_grad(code, f, target, g)):
        _fill_nan(out)
        return
    for c in prange((d + COLUMNS - 1) // COLUMNS):
        j0, j1 = c * COLUMNS, min(d, (c + 1) * COLUMNS)
        gw = w[j0:j1]  # w is spent: it holds X^T g now
        gw[:] = 0.0
        for i in range(n):
            gi = g[i]
            for j in range(j0, j1):
                gw[j - j0] += X[i, j] * gi
        for j in range(j0, j1):
            s = gw[j - j0]
            D[0, j] = -(L * power(u[j], L - 1) * s + wd * u[j])
            D[1, j] = -(-L * power(v[j], L - 1) * s + wd * v[j])


@njit(cache=True)
def matrix_factorization_field(y, out, args):
    """-(grad L + wd theta) of W = U U^T - V V^T: the GD step's row update with keep = -wd, c = 1/n."""
    rows, cols, target, code, wd, indptr, neighbor, obs, g, d, r = args
    Y, D = y.reshape((2, d, r)), out.reshape((2, d, r))
    if not math.isfinite(kmf.slopes(Y[0], Y[1], rows, cols, target, code, g)):
        _fill_nan(out)
        return
    kmf.update_rows(Y[0], Y[1], D[0], D[1], indptr, neighbor, obs, g, 1.0 / rows.shape[0], -wd, 0, d)


def _diagonal_net_args(inner, run):
    X = inner.X["train"]
    X = np.ascontiguousarray(X if X.dtype in (np.int8, np.float64) else X.astype(np.float64))
    n, d = X.shape
    return (X, np.ascontiguousarray(inner.y["train"], np.float64), inner.code, int(run.config.L), float(run.wd),
            np.empty(n), np.empty(n), np.empty(d))


def _matrix_factorization_args(inner, run):
    rows, cols, target = inner.train
    indptr, neighbor, obs = inner.adjacency
    d, r = inner.U.shape[1:]
    return (rows, cols, np.asarray(target, np.float64), inner.code, float(run.wd), indptr, neighbor, obs,
            np.empty(len(rows)), int(d), int(r))


FIELDS = {diagonal_net.NAME: (diagonal_net_field, _diagonal_net_args),
          matrix_factorization.NAME: (matrix_factorization_field, _matrix_factorization_args)}


class NumbaFlowEngine(FlowRuns):
    """B runs of the flow, each advanced by :func:`bs3` over its model's compiled field (float64).

    A subclass names its model's GD engine (``GD``), whose options (``threads``, ``layout``) it takes.
    """

    GD: type
    DTYPES = ("float64",)
    SCHEDULES = ("flow",)

    @classmethod
    def unsupported_data(cls, config, data) -> str | None:
        return cls.GD.unsupported_data(config, data)

    def __init__(self, model, runs, data, *, probe=None, dtype="float64", schedule: Flow, **options):
        inner = self.GD(model, runs, data, probe=probe, dtype=dtype, **options)
        self.field, make_args = FIELDS[model.NAME]
        self.args = [make_args(inner, r) for r in runs]
        P = sum(v.size for v in runs[0].params.values())
        self.work = [np.empty((5, P)) for _ in runs]  # k2, k3, k4, y_new and a scratch vector, per run
        super().__init__(inner, runs, schedule)

    def kernel_info(self) -> dict:
        return self.inner.kernel_info()

    def start(self, b, run):
        def fieldf(y):
            out = np.empty_like(y)
            self.field(y, out, self.args[b])
            return out

        return rflow.start(fieldf, flatten(run.params), rtol=self.stepper.rtol)

    def integrate(self, b, t_end, max_steps):
        s, st = self.stepper, self.states[b]
        scal = np.array([st.t, st.h, st.err_prev])
        counts = np.array([st.grad_evals, st.accepted, st.rejected, 0], np.int64)
        k2, k3, k4, ynew, ytmp = self.work[b]
        status = [GOING]

        def call(k):  # the governor may split the steps between its thread counts: pieces change nothing
            if status[0] == GOING and scal[0] < t_end:
                status[0] = bs3(self.field, self.args[b], st.y, st.k1, k2, k3, k4, ynew, ytmp, scal, counts, t_end, k,
                                s.rtol, s.h_min, s.max_rejections)

        self.inner.governor.run(max_steps, call)
        st.t, st.h, st.err_prev = float(scal[0]), float(scal[1]), float(scal[2])
        st.grad_evals, st.accepted, st.rejected = (int(c) for c in counts[:3])
        if status[0] != GOING:
            what = ("the gradient is not finite there" if status[0] == NOT_FINITE else
                    "the error test keeps failing (a stiff or discontinuous field: try GD)")
            raise FlowFailed(f"the flow stopped at t = {st.t:.6g}: step {st.h:.3g} after {int(counts[3])} "
                             f"rejections in a row; {what}")

    def push(self, b):
        self.inner.set_run_arrays(b, unflatten(self.states[b].y, self.like[b]))


class DiagonalNetFlow(NumbaFlowEngine):
    GD = DiagonalNetEngine
    OPTIONS = DiagonalNetEngine.OPTIONS


class MatrixFactorizationFlow(NumbaFlowEngine):
    GD = MatrixFactorizationEngine
    OPTIONS = MatrixFactorizationEngine.OPTIONS
