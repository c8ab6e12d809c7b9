"""Gradient flow d theta/dt = -(grad L(theta) + lambda theta), integrated with error control (docs/math.md §7).

The theorems are stated for this flow; GD at learning rate lr approximates it, with time t = lr x steps. This is
the float64 definition of the integrator: the Bogacki-Shampine 3(2) pair with FSAL (three new gradients per
accepted step), a PI step-size controller, and a norm-wise error test

    err = ||e||_2 / (rtol * max(||theta_n||_2, ||theta_n+1||_2)),   a step is accepted when err <= 1,

which, unlike a component-wise RMS norm, does not shrink the step for a parameter block that starts at 0 (the
MLP's b1). Steps land exactly on the requested times. Divergence (a non-finite field) and step-size collapse (a
step below ``h_min`` times the time scale, or ``max_rejections`` rejections in a row) are one-line errors naming
the time and the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dichotomy.errors import ConfigError, FlowFailed

# Bogacki-Shampine 3(2): c = (0, 1/2, 3/4, 1); the 3rd-order weights b, and e = b - b* for the error estimate.
B = (2 / 9, 1 / 3, 4 / 9)
E = (-5 / 72, 1 / 12, 1 / 9, -1 / 8)
ORDER = 3
SAFETY, GROW_MAX, SHRINK_MIN = 0.9, 5.0, 0.2
BETA1, BETA2 = 0.7 / ORDER, 0.4 / ORDER  # the PI controller's exponents (Hairer & Wanner II, IV.2; Gustafsson)


@dataclass
class FlowState:
    """Where an integration stands: time, flat parameters, the FSAL derivative, the next step, and the counts.

    Everything the next step depends on is here, so a copy (a checkpoint) continues bit for bit.
    """

    t: float
    y: np.ndarray
    k1: np.ndarray
    h: float
    err_prev: float = 1.0
    grad_evals: int = 0
    accepted: int = 0
    rejected: int = 0


def _norm(v: np.ndarray) -> float:
    return float(np.sqrt(np.vdot(v, v).real))


def start(fieldf: Callable[[np.ndarray], np.ndarray], y0: np.ndarray, h0: float | None = None, *,
          rtol: float = 1e-6) -> FlowState:
    """The state at t = 0: theta_0, its field value, and a first step (Hairer's estimate, unless ``h0``)."""
    y0 = np.array(y0, dtype=np.float64)
    k1 = fieldf(y0)
    if not np.all(np.isfinite(k1)):
        raise FlowFailed("the gradient is not finite at t = 0: the initial parameters are too large for float64")
    if h0 is None:
        d0, d1 = _norm(y0), _norm(k1)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, 1.0) if d1 > 0 else 1.0
        h0 *= rtol ** (1 / ORDER) / 1e-2  # scaled with the tolerance: a third of the digits per order
    return FlowState(0.0, y0, k1, float(h0), grad_evals=1)


def advance_to(fieldf: Callable[[np.ndarray], np.ndarray], state: FlowState, t_end: float, *, rtol: float = 1e-6,
               h_min: float = 1e-14, max_rejections: int = 50, max_steps: int | None = None) -> FlowState:
    """Integrate ``state`` forward to exactly ``t_end`` (in place; returned for chaining).

    With ``max_steps``, stop after that many accepted steps even short of ``t_end``: the steps taken are the
    ones an uninterrupted call takes, so a caller may split an integration into pieces of any number of steps
    (the driver's wall-clock chunks, a checkpoint between two) without changing a bit of it. Only the landing
    on ``t_end`` shortens a step, and it leaves the next step's size as it was.

    Parameters
    ----------
    fieldf : callable
        y -> dy/dt = -(grad L(y) + lambda y), flat float64 arrays of shape (P,).
    state : FlowState
        From :func:`start` or an earlier call; its step size and FSAL derivative carry over.
    t_end : float
        A time >= ``state.t``; the last step is shortened to land on it.
    rtol : float
        The norm-wise relative tolerance of one step's local error.
    h_min : float
        A step below ``h_min * max(1, t)`` is a collapse.
    max_rejections : int
        So many rejected steps in a row is a collapse.
    max_steps : int, optional
        Return after this many accepted steps.

    Raises
    ------
    FlowFailed
        The step size collapsed: below ``h_min`` or too many rejections in a row, because the field is not finite
        ahead or the error test keeps failing (the time and the step in the message).
    """
    if not t_end >= state.t:
        raise ConfigError(f"the flow runs forward: t_end = {t_end!r} is before t = {state.t!r}")
    in_a_row, finite, taken = 0, True, 0
    while state.t < t_end and (max_steps is None or taken < max_steps):
        last = state.t + state.h >= t_end
        h = t_end - state.t if last else state.h
        y, k1 = state.y, state.k1
        k2 = fieldf(y + (h / 2) * k1)
        k3 = fieldf(y + (3 * h / 4) * k2)
        y_new = y + h * (B[0] * k1 + B[1] * k2 + B[2] * k3)
        k4 = fieldf(y_new)
        state.grad_evals += 3
        e = h * (E[0] * k1 + E[1] * k2 + E[2] * k3 + E[3] * k4)
        finite = bool(np.all(np.isfinite(e)) and np.all(np.isfinite(y_new)))
        err = _norm(e) / (rtol * max(_norm(y), _norm(y_new), np.finfo(float).tiny)) if finite else math.inf
        if err <= 1.0:
            state.t = t_end if last else state.t + h
            state.y, state.k1 = y_new, k4
            state.accepted += 1
            in_a_row, taken = 0, taken + 1
            factor = min(GROW_MAX, max(SHRINK_MIN, SAFETY * max(err, 1e-10) ** -BETA1 * state.err_prev ** BETA2))
            state.err_prev = max(err, 1e-4)
            if not last:  # a step shortened to land on t_end says nothing about the next one's size
                state.h = h * factor
            continue
        state.rejected += 1
        in_a_row += 1
        state.h = h * (max(SHRINK_MIN, SAFETY * err ** (-1 / ORDER)) if finite else SHRINK_MIN)
        if state.h < h_min * max(1.0, state.t) or in_a_row > max_rejections:
            what = ("the gradient is not finite there" if not finite else
                    "the error test keeps failing (a stiff or discontinuous field: try GD)")
            raise FlowFailed(f"the flow stopped at t = {state.t:.6g}: step {state.h:.3g} after {in_a_row} "
                             f"rejections in a row; {what}")
    return state


STATE_FIELDS = ("t", "h", "err_prev", "grad_evals", "accepted", "rejected")


def to_arrays(state: FlowState) -> dict[str, np.ndarray]:
    """``state`` as named arrays (a checkpoint's): everything the next step depends on, exactly."""
    return {"y": state.y.copy(), "k1": state.k1.copy(), **{k: np.array(getattr(state, k)) for k in STATE_FIELDS}}


def from_arrays(arrays: dict[str, np.ndarray]) -> FlowState:
    """The :class:`FlowState` that :func:`to_arrays` wrote."""
    ints = ("grad_evals", "accepted", "rejected")
    return FlowState(y=np.array(arrays["y"], np.float64), k1=np.array(arrays["k1"], np.float64),
                     **{k: int(arrays[k]) if k in ints else float(arrays[k]) for k in STATE_FIELDS})
