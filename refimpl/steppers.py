"""The steppers: GD with coupled weight decay (the package's one rule), the loss-normalized schedule, the flow.

:func:`sgd_step` is p <- p - lr (g + wd p) (docs/math.md §5); :class:`LossNormalized` is GD without weight decay
at eta / L(theta) (Fig. 4); :class:`Flow` is the gradient flow GD approximates (§7). A run takes one of them
(``schedule=`` of :func:`dichotomy.run.driver.run`; None is GD), and every engine applies it in its own arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.refimpl import checks


def sgd_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float,
             wd: float) -> dict[str, np.ndarray]:
    """One step of ``p <- p - lr * (g + wd * p)`` for every parameter.

    This is ``torch.optim.SGD(lr=lr, weight_decay=wd)`` without momentum, i.e. gradient descent on
    L(theta) + (wd / 2) ||theta||^2. Returns new arrays; the inputs are not modified.

    Parameters
    ----------
    params : dict of str to ndarray
        Arrays of any shapes.
    grads : dict of str to ndarray
        g for each key of ``params``, of the same shape.
    lr, wd : float
        Learning rate and weight decay.

    Returns
    -------
    dict of str to ndarray
        Keyed and shaped as ``params``.
    """
    return {k: p - lr * (grads[k] + wd * p) for k, p in params.items()}


@dataclass(frozen=True)
class LossNormalized:
    """GD without weight decay at the loss-normalized learning rate eta / L(theta) (Fig. 4, App. B.1).

    As in the official no-weight-decay script, every step tests log L(theta): while it is above
    ``switch_log_loss`` (-5) the step is plain GD at the run's ``lr`` (the warm-up rate); at or below it the step
    is theta <- theta - eta (dL/dtheta) / L, formed in log space (:func:`refimpl.losses.log_normalized_grad`), so
    training goes on where L underflows to 0. With ``warmup_steps`` set, the first ``warmup_steps`` steps are
    plain and every later one normalized instead (the rule of earlier versions of this package).

    The continuous time t = sum of the effective learning rates is kept as ``log_time`` = ln t.
    """

    eta: float
    switch_log_loss: float = -5.0
    warmup_steps: int | None = None

    def __post_init__(self):
        checks.positive("eta", self.eta)
        if not isinstance(self.switch_log_loss, int | float) or not math.isfinite(self.switch_log_loss):
            raise ConfigError(f"switch_log_loss must be a finite number, got {self.switch_log_loss!r}")
        if self.warmup_steps is not None:
            checks.positive_int("warmup_steps", self.warmup_steps, minimum=0)

    loss_normalized = True  # the stepper protocol's question: no weight decay, and time kept as ln t

    def normalized(self, step: int, log_value: float) -> bool:
        """Whether the step at ``step`` (steps done so far) with log L = ``log_value`` is loss-normalized."""
        if self.warmup_steps is not None:
            return step >= self.warmup_steps
        return log_value <= self.switch_log_loss

    def describe(self) -> dict:
        return {"schedule": "eta / L(theta)", "eta": self.eta, "switch_log_loss": self.switch_log_loss,
                "warmup_steps": self.warmup_steps}


FLOW_METHODS = ("bs3",)


@dataclass(frozen=True)
class Flow:
    """Gradient flow d theta/dt = -(grad L + wd theta) instead of GD steps (:mod:`refimpl.flow`, docs/math.md §7).

    A run with this stepper integrates, with error control, to the time t = lr x steps that its GD would reach,
    and records at the times lr x (recorded step): its ``lr`` is the unit that converts steps to time, no step of
    GD is taken, and its trajectory reads like GD's (``steps``, ``time``) for every tool downstream.

    Parameters
    ----------
    rtol : float
        Each step's local error, norm-wise, relative to ||theta|| (1e-6: Fig. 3's test MSE within 5e-5 of GD's).
    method : "bs3"
        The Bogacki-Shampine 3(2) pair with FSAL and a PI controller.
    h_min : float
        A step below h_min x max(1, t) is a collapse (:class:`FlowFailed`).
    max_rejections : int
        So many rejected steps in a row is a collapse.
    eta : float, optional
        The loss-normalized flow, the continuum of :class:`LossNormalized` (needs wd = 0): in the continuous step
        s, d theta/ds = -lr grad L while log L > ``switch_log_loss``, else -eta grad L / L = -eta grad log L
        (formed in log space). The time t, dt/ds = lr or eta / L, is kept as ln t (``log_time``): the trapezoid
        rule on each accepted step, in log space (docs/math.md §7.3). Records are at the steps s themselves.
    switch_log_loss : float
        With ``eta``: the log L at and below which the flow is normalized.
    """

    rtol: float = 1e-6
    method: str = "bs3"
    h_min: float = 1e-14
    max_rejections: int = 50
    eta: float | None = None
    switch_log_loss: float = -5.0

    def __post_init__(self):
        rtol = checks.positive("rtol", self.rtol)
        if not 1e-13 <= rtol <= 0.1:
            raise ConfigError(f"rtol must lie in [1e-13, 0.1] (float64 keeps ~16 digits), got {rtol!r}")
        object.__setattr__(self, "rtol", rtol)
        if self.method not in FLOW_METHODS:
            raise ConfigError(f"unknown flow method {self.method!r}; choose one of {', '.join(FLOW_METHODS)}")
        object.__setattr__(self, "h_min", checks.positive("h_min", self.h_min))
        checks.positive_int("max_rejections", self.max_rejections)
        if self.eta is not None:
            object.__setattr__(self, "eta", checks.positive("eta", self.eta))
        if not isinstance(self.switch_log_loss, int | float) or not math.isfinite(self.switch_log_loss):
            raise ConfigError(f"switch_log_loss must be a finite number, got {self.switch_log_loss!r}")

    @property
    def loss_normalized(self) -> bool:
        """Whether this is the loss-normalized flow (``eta`` set): no weight decay, time kept as ln t."""
        return self.eta is not None

    def describe(self) -> dict:
        out = {"stepper": "flow", "method": self.method, "rtol": self.rtol, "h_min": self.h_min,
               "max_rejections": self.max_rejections}
        if self.loss_normalized:
            out.update(schedule="eta / L(theta)", eta=self.eta, switch_log_loss=self.switch_log_loss)
        return out
