"""The exception classes of the package, alone in their module (sklearn's ``exceptions.py``).

Every error the package raises on purpose derives from :class:`DichotomyError`; the checks that raise them live in
:mod:`dichotomy.refimpl.checks`. Nothing here imports anything of the package, so every layer may import it.
"""

from __future__ import annotations


class DichotomyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(DichotomyError, ValueError):
    """A hyper-parameter, shape or dataset is invalid; the message says which and why."""


class StorageError(DichotomyError, OSError):
    """The file system refused a write (full disk, read-only folder).

    The message names the file and says that nothing under that name changed.
    """


class OutputLocked(DichotomyError):
    """Another live dichotomy process holds the output folder's lock (:func:`dichotomy.store.files.locked`)."""


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


class FlowFailed(DichotomyError, ArithmeticError):
    """The gradient-flow integrator could not go on; the message names the time, the step and why.

    ``trajectory``, when a training run raised it, holds everything recorded before.
    """

    def __init__(self, message: str, trajectory=None):
        self.trajectory = trajectory
        super().__init__(message)


class TrainingInterrupted(DichotomyError, KeyboardInterrupt):
    """Training was stopped by SIGINT (Ctrl-C) or SIGTERM.

    ``trajectory`` holds everything recorded until then (``trajectories``: every run of a batch). ``exit_code`` is 130
    for SIGINT and 143 for SIGTERM.
    """

    def __init__(self, step: int, trajectory=None, *, signal_name: str = "SIGINT", trajectories=None):
        self.step = step
        self.trajectory = trajectory
        self.trajectories = trajectories if trajectories is not None else [trajectory]
        self.signal_name = signal_name
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
        super().__init__(f"training interrupted ({signal_name}) at step {step}; the trajectory so far was kept")
