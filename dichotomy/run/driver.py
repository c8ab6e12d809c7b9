"""The one training driver: every engine, every backend, single runs and batches (docs/architecture.md).

:func:`run` (one run) and :func:`run_batch` (B runs of one model on one dataset) validate their input once,
build an engine (the float64 NumPy reference by default; ``dichotomy.kernels.get_backend(name)`` binds a fast
one), and :func:`drive` it: the record schedule, progress bar, divergence per run, SIGINT/SIGTERM and the
Trajectory all live here and nowhere else. Per recorded step, for parameters theta_s after s updates:

- ``time`` = lr * s (the paper's continuous time t; with :class:`LossNormalized`, exp(``log_time``)),
- ``train_loss``, ``train_log_loss`` (log L in log space, finite at huge margins), ``test_loss``,
- ``train_acc``, ``test_acc``, ``margin`` (min_i margin_i / ||theta||^L) for classification,
- ``param_norm`` = ||theta_s||_2,

and, when a ``probe`` set is given, the outputs f(theta_s; probe) in ``Trajectory.outputs``.
"""

from __future__ import annotations

import logging
import math
import time
from types import ModuleType

import numpy as np

from dichotomy import errors, signals
from dichotomy.refimpl import checks, models
from dichotomy.refimpl.data import Dataset
from dichotomy.refimpl.engine import ReferenceEngine, RunSpec, evaluate
from dichotomy.refimpl.steppers import Flow, LossNormalized
from dichotomy.run.checkpoint import Checkpoints, Slot
from dichotomy.run.progress import bar as progress_bar
from dichotomy.run.progress import restart_clock
from dichotomy.run.trajectory import Trajectory, record_steps, sidecar_text
from dichotomy.store.keys import fingerprint
from dichotomy.store.manifest import package_version

__all__ = ["Flow", "LossNormalized", "check_run", "describe", "drive", "evaluate", "run", "run_batch"]

log = logging.getLogger(__name__)

CHUNK_SECONDS = 0.25  # one engine call lasts about this long, so a signal is honoured within ~a second
DTYPES = ("float64", "float32")


def check_run(model: ModuleType, config, params, data: Dataset, lr, wd, steps, record, probe=None):
    """Validate one run's input; return (params as float64 copies, lr, wd, steps, record, probe)."""
    if not isinstance(data, Dataset):
        raise errors.ConfigError(f"data must be a dichotomy Dataset (refimpl.data), got {type(data).__name__}")
    lr = checks.positive("learning rate lr", lr)
    wd = checks.positive("weight decay wd", wd, allow_zero=True)
    steps = checks.step_count("steps", steps)
    params = checks.model_params(model, config, params)
    for split in ("train", "test"):
        X, _ = checks.examples(model, config, params, getattr(data, f"X_{split}"), getattr(data, f"y_{split}"),
                                     data.loss, empty=f"the {split} set is empty: a run needs at least one {split} "
                                     "example")
        if split == "train":
            with np.errstate(over="ignore", invalid="ignore"):
                f = model.forward(config, params, X)[0]  # params and X are checked: the unchecked path
            if not np.all(np.isfinite(f)):
                raise errors.ConfigError("the outputs at the initialization are not finite: the initial parameters "
                                         "are too large for float64; lower alpha (or the init scale)")
    if record is None:
        record = record_steps(steps)
    else:
        try:
            record = np.asarray(record)
            if record.dtype.kind not in "iu" and not (record.dtype.kind == "f" and np.all(record == np.round(record))):
                raise TypeError
            record = np.unique(record.astype(np.int64))
        except (TypeError, ValueError):
            raise errors.ConfigError("record must be a sequence of integer steps") from None
    if record.size == 0 or record[0] < 0 or record[-1] > steps:
        raise errors.ConfigError(f"record steps must lie in [0, steps={steps}] and there must be at least one")
    if probe is not None:
        probe = model.check_inputs(config, probe)
    return params, lr, wd, steps, record, probe


def describe(config, data: Dataset, backend: str, run_config: dict | None = None, **settings) -> dict:
    """The config stored with a trajectory: model config, dataset, loss, optimizer settings, backend."""
    return {"model_config": vars(config), "data": data.info, "loss": data.loss, **settings, "backend": backend,
            **(run_config or {})}


def run(model: ModuleType | str, config, params: dict[str, np.ndarray], data: Dataset, *, lr: float,
        wd: float, steps: int, record=None, probe=None, progress: bool = False, run_config: dict | None = None,
        dtype: str = "float64", schedule: LossNormalized | Flow | None = None, engine=ReferenceEngine,
        label: str = "", checkpoints: Checkpoints | None = None, watch: dict | None = None) -> Trajectory:
    """Train ``steps`` full-batch GD steps p <- p - lr (g + wd p) and record metrics at ``record`` steps.

    Parameters
    ----------
    model : module or str
        A model module of :mod:`refimpl.models` or its name (``diagonal-net`` ...).
    config : the model's ``Config``
    params : dict of ndarray
        Initial parameters; not modified. Checked against the model's shapes (keys, shapes, finite reals).
    data : Dataset
    lr, wd : float
        Learning rate (> 0) and coupled weight decay (>= 0). With ``schedule``, ``lr`` is the warm-up rate.
    steps : int
        Number of updates.
    record : array of int, optional
        Steps in [0, steps] at which to record; default :func:`dichotomy.run.trajectory.record_steps`.
    probe : array, optional
        Inputs whose outputs are recorded at every recorded step (``Trajectory.outputs``).
    progress : bool
        Show a progress bar with the latest metrics.
    run_config : dict, optional
        Extra JSON-serializable description stored in the trajectory (seed, preset, ...).
    dtype : "float64" or "float32"
        The engine's working precision (the reference computes in float64 only).
    schedule : LossNormalized or Flow, optional
        The stepper (None: GD). LossNormalized: GD without weight decay at eta / L(theta) (needs ``wd = 0``).
        Flow: the gradient flow, integrated to t = lr x steps and recorded at the times lr x ``record``.
    engine : engine class
        Default the NumPy reference; ``dichotomy.kernels.get_backend(name).run`` passes its own.
    checkpoints : Checkpoints, optional
        Checkpoint the run there, and resume it from its last intact checkpoint (bit for bit).
    watch : dict of str to callable, optional
        More metrics, each ``fn(config, params) -> float`` of the float64 parameters at every recorded step, on
        any backend (a name the engine also records replaces its value: Fig. 1b's exact population accuracy).

    Raises
    ------
    TrainingDiverged
        At the first step whose train loss is not finite; ``.trajectory`` holds what was recorded.
    FlowFailed
        With a Flow, when the integrator cannot go on (the time and the step in the message).
    TrainingInterrupted
        On SIGINT (Ctrl-C) or SIGTERM; ``.trajectory`` holds what was recorded.
    """
    trajs = run_batch(model, [config], [params], data, lr=[lr], wd=[wd], steps=steps, record=record, probe=probe,
                      progress=progress, run_config=run_config, dtype=dtype, schedule=schedule, engine=engine,
                      label=label, checkpoints=checkpoints, watch=watch)
    traj = trajs[0]
    if traj.status == "diverged":
        failed = traj.config.get("integrator", {}).get("failed")
        if failed:
            raise errors.FlowFailed(failed, traj)
        raise errors.TrainingDiverged(traj.config["diverged_at"], lr, traj)
    return traj


def _per_run(name: str, value, B: int) -> list:
    """One value for every run, or exactly B of them."""
    if isinstance(value, list | tuple | np.ndarray):
        value = list(value)
        if len(value) != B:
            raise errors.ConfigError(f"{name} must be one value or a sequence of {B} (one per run), got {len(value)}")
        return value
    return [value] * B


def run_batch(model: ModuleType | str, configs, params: list[dict], data: Dataset, *, lr, wd, steps: int,
              record=None, probe=None, progress: bool = False, run_config: dict | None = None,
              dtype: str = "float64", schedule: LossNormalized | Flow | None = None, engine=ReferenceEngine,
              label: str = "", checkpoints: Checkpoints | None = None, watch: dict | None = None) -> list[Trajectory]:
    """Train B = len(params) runs of one model on ``data``; ``configs``, ``lr`` and ``wd`` are one value or B.

    Each run trains with its own config (depth, alpha, ...), learning rate and weight decay, and gets the
    Trajectory :func:`run` would return for it alone (a batch of more than one run also records its place,
    ``config["batch"] = {"index": b, "size": B}``; a batch of one is :func:`run`). A run that diverges gets
    status ``"diverged"`` (its step in ``config["diverged_at"]``) and stops; the others go on. With
    ``checkpoints``, the batch keeps one checkpoint, keyed by everything that determines its runs
    (:func:`dichotomy.run.checkpoint.fingerprint`).

    Raises
    ------
    TrainingInterrupted
        On SIGINT or SIGTERM; ``.trajectories`` holds every run's record so far.
    """
    model = models.resolve(model)
    if not isinstance(params, list | tuple) or not params:
        raise errors.ConfigError("run_batch needs a non-empty list of initial parameter dicts, one per run")
    B = len(params)
    configs, lrs, wds = _per_run("configs", configs, B), _per_run("lr", lr, B), _per_run("wd", wd, B)
    runs, checked = [], None
    for c, p, a, w in zip(configs, params, lrs, wds, strict=True):
        checks.check_config(model, c)
        p, a, w, steps, rec, prb = check_run(model, c, p, data, a, w, steps, record, probe)
        runs.append(RunSpec(c, p, a, w))
        checked = rec, prb
    record, probe = checked
    if run_config is not None:
        if not isinstance(run_config, dict):
            raise errors.ConfigError(f"run_config must be a dict, got {type(run_config).__name__}")
        sidecar_text("run_config", run_config)  # refused now, not when the finished run is saved
    if checkpoints is not None and not isinstance(checkpoints, Checkpoints):
        raise errors.ConfigError(f"checkpoints must be a dichotomy.run.checkpoint.Checkpoints (or None), got "
                                 f"{type(checkpoints).__name__}")
    if not callable(engine):
        raise errors.ConfigError(f"engine must be an engine class (ReferenceEngine, or get_backend(name).engine), "
                                 f"got {engine!r}")
    if dtype not in DTYPES:
        raise errors.ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if schedule is not None:
        if not isinstance(schedule, LossNormalized | Flow):
            raise errors.ConfigError(f"schedule must be a LossNormalized, a Flow or None (GD), got "
                                     f"{type(schedule).__name__}")
        if schedule is not None and schedule.loss_normalized and any(r.wd != 0 for r in runs):
            raise errors.ConfigError("the loss-normalized schedule trains without weight decay: pass wd=0")
    name = getattr(engine, "name", type(engine).__name__)
    if isinstance(schedule, Flow):
        if not hasattr(engine, "flow_engine"):
            raise errors.ConfigError(f"the {name} backend has no gradient-flow engine; use --backend numpy or numba")
        engine = engine.flow_engine()
    reason = engine.unsupported(model, runs, data, dtype, schedule) if hasattr(engine, "unsupported") else None
    if reason is not None:
        raise errors.ConfigError(f"the {name} backend cannot train this: {reason}")
    if watch is not None and not (isinstance(watch, dict) and all(isinstance(k, str) and callable(f)
                                                                   for k, f in watch.items())):
        raise errors.ConfigError("watch must be a dict of metric name to a function fn(config, params) -> float")
    eng = engine(model, runs, data, probe=probe, dtype=dtype, schedule=schedule)
    settings = {"dtype": dtype, **(schedule.describe() if schedule is not None else {}),
                **({"watch": sorted(watch)} if watch else {})}
    cfgs = [describe(r.config, data, name, run_config, lr=r.lr, wd=r.wd, steps=steps, **settings,
                     **({"batch": {"index": b, "size": B}} if B > 1 else {})) for b, r in enumerate(runs)]
    slot = None
    if checkpoints is not None:
        key = fingerprint(model.NAME, cfgs, [r.params for r in runs], data.X_train, data.y_train, data.X_test,
                          data.y_test, record, probe, package_version())
        slot = checkpoints.slot(key, what=cfgs if B > 1 else cfgs[0])
    watched = None
    if watch:
        def watched(b: int, params: dict) -> dict[str, float]:
            return {k: float(fn(runs[b].config, params)) for k, fn in watch.items()}

    return drive(eng, steps, record, cfgs, lrs=[r.lr for r in runs], probe=probe is not None, progress=progress,
                 label=label, checkpoint=slot, watch=watched,
                 time_from_log=schedule is not None and schedule.loss_normalized)


def _snapshot(engine, rows, outputs, next_target: int) -> dict[str, np.ndarray]:
    """The driver's state as arrays: the engine's, every run's rows and probe outputs, the next record index."""
    arrays = {f"engine/{k}": np.asarray(v) for k, v in engine.state().items()}
    arrays["driver/next_target"] = np.array(next_target, np.int64)
    arrays["driver/rows"] = np.array([len(r) for r in rows], np.int64)
    for b, run_rows in enumerate(rows):
        for k in run_rows[0] if run_rows else ():
            arrays[f"rows/{b}/{k}"] = np.array([r[k] for r in run_rows], np.float64)
        if outputs is not None and outputs[b]:
            arrays[f"outputs/{b}"] = np.stack(outputs[b])
    return arrays


def _restore(engine, saved: dict[str, np.ndarray], rows, outputs) -> int:
    """Load a :func:`_snapshot` into ``engine``, ``rows`` and ``outputs``; return the next record index."""
    engine.load_state({k[len("engine/"):]: v for k, v in saved.items() if k.startswith("engine/")})
    for b, m in enumerate(saved["driver/rows"]):
        names = [k.rsplit("/", 1)[1] for k in saved if k.startswith(f"rows/{b}/")]
        rows[b][:] = [{k: float(saved[f"rows/{b}/{k}"][i]) for k in names} for i in range(int(m))]
        if outputs is not None:
            outputs[b][:] = list(saved[f"outputs/{b}"]) if f"outputs/{b}" in saved else []
    return int(saved["driver/next_target"])


def drive(engine, steps: int, record: np.ndarray, configs: list[dict], *, lrs: list[float], probe: bool = False,
          progress: bool = False, label: str = "", time_from_log: bool = False,
          checkpoint: Slot | None = None, watch=None) -> list[Trajectory]:
    """Advance ``engine`` to ``steps``, recording every run's metrics at the steps of ``record``.

    The gaps between recorded steps are advanced in chunks of about :data:`CHUNK_SECONDS`, so a signal is
    honoured promptly however long a gap is. With a ``checkpoint`` slot, the run resumes from its last intact
    checkpoint ("resumed from step N"), saves one whenever it is due, on SIGINT/SIGTERM and at the end. A flow
    engine (``continuous``) is advanced by integrator steps toward each record's step (:mod:`refimpl.flow_engine`).
    ``watch(b, params)`` adds metrics of run b's parameters to each record. Returns one Trajectory per run
    (status ``completed`` or ``diverged``); raises :class:`TrainingInterrupted` on SIGINT/SIGTERM with all of them.
    """
    B, continuous = engine.B, getattr(engine, "continuous", False)
    rows: list[list[dict]] = [[] for _ in range(B)]
    outputs: list[list[np.ndarray]] | None = [[] for _ in range(B)] if probe else None

    def trajectories(stopped: str = "completed") -> list[Trajectory]:
        out, params = [], engine.params()
        kernel = engine.kernel_info() if hasattr(engine, "kernel_info") else None  # the fast engines' choices
        for b in range(B):
            cfg, status = dict(configs[b]), stopped
            if kernel:
                cfg["kernel"] = kernel
            if continuous:
                cfg["integrator"] = engine.integrator(b)
            if engine.diverged_at[b] >= 0:
                cfg["diverged_at"], status = int(engine.diverged_at[b]), "diverged"
            traj = Trajectory.from_rows(record, rows[b], params[b], cfg, status,
                                        lr=None if time_from_log else lrs[b],
                                        outputs=outputs[b] if outputs is not None else None)
            if time_from_log:
                with np.errstate(over="ignore"):
                    traj.metrics["time"] = np.exp(traj.metrics.get("log_time", np.zeros(0)))
            out.append(traj)
        return out

    targets = list(record) + ([steps] if record[-1] < steps else [])
    first = 0
    if checkpoint is not None and (saved := checkpoint.load()) is not None:
        first = _restore(engine, saved, rows, outputs)
        log.info("%sresumed from step %d (%s)", f"{label}: " if label else "", engine.step, checkpoint.sidecar)
    # a flow engine (continuous) is advanced by integrator steps, and its bar counts time, t = lr_0 x step (the
    # loss-normalized flow's time is exponential in its steps: its bar counts steps)
    in_time = continuous and not time_from_log
    unit = lrs[0] if in_time else 1
    bar = progress_bar(steps * unit, show=progress, initial=engine.step * unit, unit="t" if in_time else "step",
                       desc=label or None)
    timed = False  # the bar's clock restarts once the first engine call (the one that compiles) has returned
    chunk, s = 1, engine.step
    try:
        with signals.deferred(), np.errstate(over="ignore", invalid="ignore"):
            for i in range(first, len(targets)):
                target = targets[i]
                while s < target and np.any(engine.diverged_at < 0):
                    start = time.perf_counter()
                    if continuous:
                        k = max(1, engine.advance_toward(target, chunk))
                        s = engine.step
                    else:
                        k = int(min(chunk, target - s))
                        engine.advance(k)
                        s += k
                    if not timed:
                        restart_clock(bar)
                        timed = True
                    rate = (time.perf_counter() - start) / k
                    chunk = max(1, min(16 * chunk, int(CHUNK_SECONDS / max(rate, 1e-9))))
                    bar.update(s * unit - bar.n)
                    if signals.pending():
                        break
                    if checkpoint is not None and checkpoint.due():
                        _periodic(checkpoint, int(s), _snapshot(engine, rows, outputs, i))
                if signals.pending():
                    _stop(signals.take(), int(s), checkpoint, _snapshot(engine, rows, outputs, i), trajectories)
                if np.any(engine.diverged_at < 0):
                    s = int(target)
                    _record(engine, s, s in record, rows, outputs, watch)
                if rows[0]:
                    bar.set_postfix({k: f"{rows[0][-1][k]:.4g}" for k in ("train_loss", "test_loss", "test_acc")
                                     if k in rows[0][-1]}, refresh=False)
                if signals.pending():
                    _stop(signals.take(), int(s), checkpoint, _snapshot(engine, rows, outputs, i + 1), trajectories)
                if not np.any(engine.diverged_at < 0):
                    break
            if checkpoint is not None and first < len(targets):
                checkpoint.save(int(engine.step), _snapshot(engine, rows, outputs, len(targets)))
    except errors.TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:  # a second signal, or Ctrl-C outside the main thread's handlers
        trajs = trajectories("interrupted")
        raise errors.TrainingInterrupted(int(s), trajs[0], signal_name=getattr(e, "signal_name", "SIGINT"),
                                         trajectories=trajs) from None
    finally:
        bar.close()
    return trajectories()


def _periodic(checkpoint: Slot, s: int, snapshot: dict) -> None:
    """A periodic checkpoint; if the disk refuses it, warn and train on.

    The previous one is intact, and the run may still end well: its final save is not optional and fails loudly.
    """
    try:
        checkpoint.save(s, snapshot)
    except errors.StorageError as e:
        log.warning("no checkpoint at step %d (training goes on; the previous checkpoint is intact): %s", s, e)


def _stop(name: str, s: int, checkpoint, snapshot: dict, trajectories) -> None:
    """Checkpoint (when checkpointing) and raise TrainingInterrupted for the signal ``name``."""
    if checkpoint is not None:
        checkpoint.save(s, snapshot)
    trajs = trajectories("interrupted")
    raise errors.TrainingInterrupted(s, trajs[0], signal_name=name, trajectories=trajs)


def _record(engine, s: int, recorded: bool, rows, outputs, watch=None) -> None:
    """Metrics of every run still going at step ``s``; a non-finite train loss there is its divergence step.

    Past the last recorded step (``recorded`` False) only that check is made.
    """
    going = np.flatnonzero(engine.diverged_at < 0)
    metrics = engine.metrics()
    probe = engine.outputs("probe") if outputs is not None and recorded else None
    params = engine.params() if watch is not None and recorded else None
    for b in going:
        if not math.isfinite(metrics[b]["train_loss"]):
            engine.diverged_at[b] = s
            continue
        if recorded:
            rows[b].append(metrics[b] if params is None else {**metrics[b], **watch(b, params[b])})
            if probe is not None:
                outputs[b].append(np.asarray(probe[b], np.float64))
