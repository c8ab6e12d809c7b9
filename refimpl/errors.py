"""Errors raised by the reference, and the input checks that raise them.

Every check turns bad input into a one-line :class:`ConfigError` that names the argument and says what to
do, instead of a traceback from deep inside NumPy or a silent NaN later on.
"""

from __future__ import annotations

import math

import numpy as np


class DichotomyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(DichotomyError, ValueError):
    """A hyper-parameter, shape or dataset is invalid; the message says which and why."""


class StorageError(DichotomyError, OSError):
    """The file system refused a write (full disk, read-only folder); the message names the file and says that
    nothing under that name changed."""


class OutputLocked(DichotomyError):
    """Another live dichotomy process holds the output folder's lock (:func:`refimpl.files.locked`)."""


class TrainingDiverged(DichotomyError, FloatingPointError):
    """Gradient descent produced a non-finite loss.

    Attributes
    ----------
    step : int
        The first step whose loss or parameters were not finite.
    trajectory : Trajectory or None
        Everything recorded before the divergence, so that nothing is lost.
    """

    def __init__(self, step: int, lr: float, trajectory=None):
        self.step = step
        self.lr = lr
        self.trajectory = trajectory
        advice = ("at the initialization: the initial parameters are too large for float64 (lower alpha or the "
                  "init scale)" if step == 0 else f"try a smaller learning rate than lr={lr:g}")
        super().__init__(f"training diverged at step {step}: the loss is not finite; {advice}")


MAX_STEPS = 10**15  # a longer run would take decades at a nanosecond per step; larger counts overflow int64 maths


def positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` after checking it is a finite number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return x


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """Return ``int(value)`` after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def step_count(name: str, value, *, minimum: int = 0) -> int:
    """Return ``int(value)`` after checking it is an integer in [``minimum``, :data:`MAX_STEPS`]."""
    n = positive_int(name, value, minimum=minimum)
    if n > MAX_STEPS:
        raise ConfigError(f"{name}={n} is more than {MAX_STEPS:.0e} steps, which no run can take; give fewer")
    return n


def fraction(name: str, value) -> float:
    """Return ``float(value)`` after checking it lies in the open interval (0, 1)."""
    x = positive(name, value)
    if not x < 1:
        raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return x


def finite_array(name: str, a, *, ndim: int | None = None, real: bool = False) -> np.ndarray:
    """Return ``np.asarray(a)`` after checking it is numeric (real with ``real``), finite and (optionally)
    ``ndim``-dimensional."""
    a = np.asarray(a)
    if a.dtype.kind not in ("biuf" if real else "biufc"):
        kind = "real" if real else "numeric"
        raise ConfigError(f"{name} must be a {kind} array, got dtype {a.dtype}"
                          + ("; complex inputs are not supported" if a.dtype.kind == "c" else ""))
    if ndim is not None and a.ndim != ndim:
        raise ConfigError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ConfigError(f"{name} contains {bad} NaN or inf entries; clean the data before training")
    return a


class TrainingInterrupted(DichotomyError, KeyboardInterrupt):
    """Training was stopped by SIGINT (Ctrl-C) or SIGTERM; ``trajectory`` holds everything recorded until then
    (``trajectories``: every run of a batch). ``exit_code`` is 130 for SIGINT and 143 for SIGTERM."""

    def __init__(self, step: int, trajectory=None, *, signal_name: str = "SIGINT", trajectories=None):
        self.step = step
        self.trajectory = trajectory
        self.trajectories = trajectories if trajectories is not None else [trajectory]
        self.signal_name = signal_name
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
        super().__init__(f"training interrupted ({signal_name}) at step {step}; the trajectory so far was kept")
