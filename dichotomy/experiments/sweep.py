"""Sweeps: one preset over a grid of its fields and seeds, stored run by run and combined into one Dataset.

A :class:`Grid` names axes (any preset field or model option: alpha, wd, lr, L, d, n_train, ...) with their
values, and seeds; :func:`plan` expands it into runs and :func:`tasks` packs the runs that share a dataset and a
step count into *tasks*, each trained as one batch of the backend's engine (dichotomy/experiments/grid.py, whose
names this module offers too). :func:`run` executes the tasks that are not
done yet (in this process, in a pool of processes sized to the cores, or on Dask: dichotomy/experiments/cluster.py) and
writes the store:

    DIR/sweep.json            the grid (what ``dichotomy phase`` and a rerun read)
    DIR/runs/KEY/             one finished run: trajectory.npz/.json, provenance.json, manifest.json
    DIR/checkpoints/TASK/     a task's checkpoints while it trains (cleared when its runs are stored)
    DIR/sweep.nc              every run's metrics, dims (axes..., seed, step), NetCDF (xarray.open_dataset)

KEY hashes everything that determines a run (the overridden preset, backend, dtype, record schedule and package
version), so a rerun of the same command trains only the runs whose manifest does not verify, and a task killed
mid-run resumes from its last checkpoint. Seed s draws the dataset with ``preset.seed + s`` and the initial
parameters with ``preset.init_seed + s`` (docs/sweeps.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from dichotomy import errors, signals
from dichotomy.errors import ConfigError
from dichotomy.experiments import presets
from dichotomy.experiments import runs as claim_runs
from dichotomy.experiments.grid import (  # noqa: F401  (sweep.grid, sweep.plan ...: the grid's names, here too)
    BATCH,
    Grid,
    RunPlan,
    Task,
    grid,
    parse_axis,
    parse_seeds,
    plan,
    read_config,
    tasks,
)
from dichotomy.kernels import cores as kcores
from dichotomy.refimpl.limits import predictors
from dichotomy.regime import gd_regime
from dichotomy.run import trajectory
from dichotomy.run.checkpoint import Checkpoints
from dichotomy.run.progress import bar as progress_bar
from dichotomy.store import files, manifest
from dichotomy.store.resultset import ResultSet

GRID_FILE, STORE_FILE = "sweep.json", "sweep.nc"
OWN_FOLDERS = ("runs", "checkpoints")  # a sweep's folders, there before its sweep.json when it was cut short
RETRIES = 1     # a task whose worker dies is tried again this many times, from its checkpoint


# --- one task ------------------------------------------------------------------------------------------------

def run_folder(out: Path, key: str) -> Path:
    return Path(out) / "runs" / key


def is_done(out: Path, r: RunPlan) -> bool:
    return ResultSet(run_folder(out, r.key), r.key).check().ok


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def run_task(task: Task, progress: bool = False) -> list[str]:
    """Train the task's runs as one batch (resuming from its checkpoint), store each run, clear the checkpoint.

    Returns the keys stored. Runs in a worker process or in this one.
    """
    from dichotomy.kernels import get_backend  # validation may import kernels; workers import it here

    backend = get_backend(task.backend)
    first = task.runs[0].preset
    module, _, _, data = presets.build(first)
    configs = [presets.model_config(r.preset, data) for r in task.runs]
    params = [module.init(c, np.random.default_rng(r.preset.init_seed)) for c, r in zip(configs, task.runs,
                                                                                        strict=True)]
    out = Path(task.out)
    cp = Checkpoints(out / "checkpoints" / task.key, every=task.checkpoint_every)
    trajs = backend.run_batch(module, configs, params, data, lr=[r.preset.lr for r in task.runs],
                              wd=[r.preset.wd for r in task.runs], steps=first.steps,
                              record=claim_runs.schedule(first.steps), dtype=task.dtype, checkpoints=cp,
                              schedule=claim_runs.stepper_of({"flow": task.flow}),
                              run_config={"sweep_task": task.key}, progress=progress,
                              label=f"{len(task.runs)} run{'s' if len(task.runs) > 1 else ''}, {first.steps:,} steps")
    host = {"node": platform.node(), "machine": platform.machine(), "processor": platform.processor()}
    commit = _git_commit()
    for r, traj, config, p0 in zip(task.runs, trajs, configs, params, strict=True):
        predicted = predictors.predicted_time(module, config, r.preset.lr, r.preset.wd)
        largest = None  # lr x sharpness at the run's ends (GD only): is it in the gradient-flow regime?
        if task.flow is None and traj.status == "completed":
            try:
                largest = gd_regime(module, config, p0, traj, data, lr=r.preset.lr, wd=r.preset.wd).largest
                largest = float(f"{largest:.3g}")  # Lanczos's accuracy; BLAS threads move its last bits
            except errors.DichotomyError:
                largest = None
        folder = run_folder(out, r.key)
        folder.mkdir(parents=True, exist_ok=True)
        results = ResultSet(folder, r.key)
        results.begin()
        paths = list(traj.save(folder / "trajectory"))
        provenance = {"key": r.key, "coords": r.coords, "seed": r.seed, "preset": dataclasses.asdict(r.preset),
                      "backend": task.backend, "dtype": task.dtype, "status": traj.status,
                      **({"flow": task.flow, "integrator": traj.config.get("integrator")} if task.flow else {}),
                      "predicted": files.json_ready(predicted), "lr_sharpness": largest,
                      "package_version": manifest.package_version(), "git_commit": commit,
                      "versions": trajectory.versions(), "host": host, "task": task.key,
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        paths.append(files.write_json(folder / "provenance.json", provenance, indent=2))
        results.seal(paths)
    cp.clear()  # after every run of the batch is sealed
    return [r.key for r in task.runs]


# --- executing the tasks -------------------------------------------------------------------------------------

class WorkerDied(errors.DichotomyError):
    """A task was started more than 1 + :data:`RETRIES` times: its worker died each time."""


def _attempts_file(task: Task) -> Path:
    return Path(task.out) / "checkpoints" / task.key / "attempts.json"  # cleared with the task's checkpoints


def run_attempt(task: Task, threads: int | None = None, progress: bool = False) -> list[str]:
    """:func:`run_task`, counting its starts.

    A task is started again only when the process running it died (a task's own error is reported, not retried), so a
    third start means its worker died twice. Every executor runs tasks through this; ``threads`` sets the engine's
    threads in this process (None: leave it).
    """
    path = _attempts_file(task)
    started = json.loads(path.read_text())["started"] if path.is_file() else 0
    if started > RETRIES:
        raise WorkerDied(f"its worker died {started} times (it is resumed from its checkpoint at most "
                         f"{RETRIES} time{'s' if RETRIES != 1 else ''})")
    files.write_json(path, {"started": started + 1})
    if threads is not None:
        kcores.limit_process(threads)
    return run_task(task, progress)


def execute_local(todo: list[Task], on_done, on_failed, *, workers: int, threads: int | None = None,
                  progress: bool = False) -> None:
    """Run the tasks in this process (``workers`` = 1) or in a pool of ``workers`` processes.

    Each pool process has an equal share of the cores for its engine's threads (or ``threads`` each). A pool whose
    worker dies is replaced and the tasks it had not finished are submitted again: each resumes from its checkpoint, and
    :func:`run_attempt` reports a task failed when its worker has died more than :data:`RETRIES` times.
    """
    share = kcores.threads_per_worker(workers, threads)
    if workers == 1:
        if threads is not None:
            kcores.limit_process(share)
        for t in todo:
            signals.check()  # between two tasks: a signal noted while Numba compiled is honoured here
            try:
                keys = run_attempt(t, progress=progress)  # in this process: the steps' bar too
            except KeyboardInterrupt:  # TrainingInterrupted too: a stop stops the sweep, not just this task
                raise
            except (errors.DichotomyError, ArithmeticError, ValueError, OSError) as e:
                on_failed(t, f"{type(e).__name__}: {e}")
            else:
                on_done(t, keys)
        return
    pending = list(todo)
    while pending:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=kcores.limit_process,
                                 initargs=(share,)) as pool:
            futures = {pool.submit(run_attempt, t): t for t in pending}
            pending = []
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for f in finished:
                    t = futures.pop(f)
                    try:
                        keys = f.result()
                    except BrokenProcessPool:  # some worker died: this task may not even have started
                        pending.append(t)
                    except KeyboardInterrupt:  # a worker's TrainingInterrupted: the sweep stops (rerun resumes)
                        raise
                    except Exception as e:  # the task's own error, raised again here: the others go on
                        on_failed(t, f"{type(e).__name__}: {e}")
                    else:
                        on_done(t, keys)


@dataclass
class Outcome:
    """What a sweep did: runs in the grid, found done, trained now, failed (with reasons), and the store."""

    total: int
    reused: int
    trained: int
    failed: dict[str, str]
    store: Path | None


def default_workers(n_tasks: int | None = None, threads: int | None = None) -> int:
    """One process per core this process may use (per ``threads`` cores if given), at most one per task."""
    workers = max(1, kcores.available_cores() // (threads or 1))
    return workers if n_tasks is None else max(1, min(workers, n_tasks))


def run(g: Grid, out: Path, *, backend: str = "numba", dtype: str = "float64", workers: int | None = None,
        batch: int = BATCH, checkpoint_every: float | None = None, progress: bool = True,
        executor=None, threads: int | None = None, flow: dict | None = None) -> Outcome:
    """Train every run of ``g`` that ``out`` does not hold yet, then write ``out/sweep.nc``.

    ``executor(tasks, on_done, on_failed)`` runs the tasks (dichotomy/experiments/cluster.py's Dask executors); default:
    :func:`execute_local` with ``workers`` processes (default: one per available core, or per ``threads``
    cores, at most one per task; 1 trains in this process), each with at most ``threads`` threads (default:
    its share of the cores). Batches hold at most ``batch`` runs, and fewer when that leaves a worker
    (``workers``, or the executor's ``workers``) without one. With ``flow`` (:class:`refimpl.steppers.Flow`
    settings) every run integrates the gradient flow to its time lr x steps.
    """
    out = Path(out).resolve()  # absolute: a worker elsewhere writes into the same folder
    if out.is_dir() and not (out / GRID_FILE).exists():
        foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.name not in OWN_FOLDERS)
        if foreign:
            raise ConfigError(f"{out} holds {foreign[0]}{' and more' if len(foreign) > 1 else ''} but no {GRID_FILE}: "
                              "it is not a sweep store; give --out a new or empty folder")
    if flow is not None:
        claim_runs.stepper_of({"flow": flow})  # bad settings are one line before anything runs
    everything = plan(g, backend=backend, dtype=dtype, flow=flow)
    todo = [r for r in everything if not is_done(out, r)]
    # batches no larger than needed to give every worker one: 16 runs on 2 workers are 2 batches of 8, not 1 of 16
    spread = workers or (getattr(executor, "workers", None) if executor is not None
                         else default_workers(len(todo), threads))
    if spread:
        batch = min(batch, max(1, math.ceil(len(todo) / spread)))
    work = tasks(todo, backend=backend, dtype=dtype, out=out, batch=batch, checkpoint_every=checkpoint_every,
                 flow=flow)
    for t in work:  # a new sweep: every task gets its retries again
        _attempts_file(t).unlink(missing_ok=True)
    if executor is None:
        executor = functools.partial(execute_local, workers=workers or default_workers(len(work), threads),
                                     threads=threads, progress=progress)
    files.write_json(out / GRID_FILE, {**g.to_json(), "backend": backend, "dtype": dtype,
                                       **({"flow": flow} if flow else {})}, indent=2)
    failed: dict[str, str] = {}
    bar = _bar(len(everything), len(everything) - len(todo), progress)
    try:
        def done(t, keys):
            bar.update(len(keys))

        def fail(t, reason):
            for r in t.runs:
                failed[r.key] = reason
            bar.update(len(t.runs))

        executor(work, done, fail)
    finally:
        bar.close()
    try:
        (out / "checkpoints").rmdir()  # only when every task cleared its own
    except OSError:
        pass
    store = write_store(g, out, everything)
    return Outcome(len(everything), len(everything) - len(todo), len(todo) - len(failed), failed, store)


def _bar(total: int, initial: int, show: bool):
    return progress_bar(total, show=show, initial=initial, unit="run", desc="sweep")


# --- the combined store --------------------------------------------------------------------------------------

PER_RUN = ("alpha", "lr", "wd", "t_star", "lr_sharpness")  # per-run variables besides status, dims (axes..., seed)


def write_store(g: Grid, out: Path, everything: list[RunPlan]) -> Path:
    """Write ``out/sweep.nc`` atomically: every stored run's metrics, their ``status`` and per-run values.

    The metrics have dims (axes..., seed, step), NaN where a run has no record (missing, failed, or stopped early);
    ``status`` has dims (axes..., seed); and per run (axes..., seed) the file holds its init scale ``run_alpha``,
    ``run_lr``, ``run_wd``, the predicted switch ``run_t_star`` = ln(alpha)/(lr wd) in steps (NaN where the theory
    predicts none) and ``run_lr_sharpness``, the larger of lr x sharpness at a GD run's two ends (NaN for the flow).
    """
    import xarray as xr

    names = list(g.axes)
    shape = tuple(len(g.axes[n]) for n in names) + (len(g.seeds),)
    loaded, predicted, sharp, steps = {}, {}, {}, set()
    for r in everything:
        folder = run_folder(out, r.key)
        if ResultSet(folder, r.key).check().ok:
            traj = trajectory.load(folder / "trajectory")
            loaded[r.key] = traj
            provenance = json.loads((folder / "provenance.json").read_text())
            predicted[r.key] = provenance.get("predicted") or {}
            sharp[r.key] = provenance.get("lr_sharpness")
            steps.update(int(s) for s in traj.steps)
    step_axis = np.array(sorted(steps), np.int64)
    metrics = sorted({m for t in loaded.values() for m in t.metrics})
    values = {m: np.full(shape + (len(step_axis),), np.nan) for m in metrics}
    status = np.full(shape, "missing", dtype=object)
    per_run = {name: np.full(shape, np.nan) for name in PER_RUN}
    for r in everything:
        index = tuple(g.axes[n].index(r.coords[n]) for n in names) + (g.seeds.index(r.seed),)
        traj = loaded.get(r.key)
        if traj is None:
            continue
        status[index] = traj.status
        p = predicted[r.key]
        for name, value in (("alpha", p.get("alpha")), ("lr", r.preset.lr), ("wd", r.preset.wd),
                            ("t_star", p.get("steps")), ("lr_sharpness", sharp[r.key])):
            per_run[name][index] = np.nan if value is None else value
        where = np.searchsorted(step_axis, traj.steps)
        for m, v in traj.metrics.items():
            values[m][index + (where,)] = v
    dims = (*names, "seed", "step")
    # no run recorded anything (all failed or missing): no step dimension (NetCDF 3 cannot hold a fixed one of 0)
    ds = xr.Dataset({m: (dims, v) for m, v in values.items()},
                    coords={**{n: g.axes[n] for n in names}, "seed": g.seeds,
                            **({"step": step_axis} if step_axis.size else {})})
    ds["status"] = (dims[:-1], status.astype(str))
    for name, v in per_run.items():
        ds[f"run_{name}"] = (dims[:-1], v)
    ds.attrs.update({"preset": g.preset, "grid": json.dumps(g.to_json()),
                     "package_version": manifest.package_version(), "runs_stored": len(loaded),
                     "runs_total": len(everything)})
    path = out / STORE_FILE
    tmp = out / f".{STORE_FILE}.{os.getpid()}.tmp"
    try:
        ds.to_netcdf(tmp, engine="scipy")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
