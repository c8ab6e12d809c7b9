"""dichotomy sweep: a preset over a grid of its fields and seeds, into one store."""

from __future__ import annotations

import contextlib

from dichotomy import errors
from dichotomy.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_checkpoint_options,
    add_flow_options,
    choices,
    count,
    flow_of,
    one_line,
    one_of,
    path_arg,
    threads_of,
    writable_dir,
)
from dichotomy.experiments import cluster as cluster_module
from dichotomy.experiments import presets
from dichotomy.experiments import sweep as sweep_module
from dichotomy.kernels import BACKENDS, get_backend
from dichotomy.refimpl import checks
from dichotomy.store import files

NAME = "sweep"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    sw = command("sweep", "train a preset over a grid of its fields and seeds into one store (docs/sweeps.md)",
                 "Train PRESET at every combination of the --grid values and --seeds, batching the runs that share "
                 "a dataset, in a pool of processes; store each run under OUT/runs/ and all of them in OUT/sweep.nc "
                 "(xarray.open_dataset). Rerunning the command trains only what is missing.")
    sw.add_argument("preset", nargs="?", default=None, **one_of("preset", presets.PRESETS), metavar="PRESET",
                    help=f"the preset to sweep ({choices(presets.PRESETS)}); or give --config")
    sw.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="an axis: a preset field or model option and its values (repeat for more axes)")
    sw.add_argument("--seeds", default=None, metavar="A:B", help="seeds A to B-1 (default 0:1); seed s draws the "
                    "dataset and the initial parameters with the preset's seeds + s")
    sw.add_argument("--steps", type=count, default=None, help="steps of every run (default: the preset's)")
    sw.add_argument("--config", type=path_arg, default=None, metavar="SWEEP_TOML",
                    help="read preset, steps, seeds, backend and a [grid] table from this TOML file")
    sw.add_argument("--backend", default=None, **one_of("backend", BACKENDS), metavar="BACKEND",
                    help=f"{choices(BACKENDS)} (default numba)")
    sw.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    sw.add_argument("--workers", type=int, default=None,
                    help="processes (default: one per available core, or per --threads cores, at most one per "
                         "batch; 1 trains in this process)")
    sw.add_argument("--threads", type=int, default=None, metavar="N",
                    help="threads of each worker's engine at most (default: its share of the available cores); "
                         "workers x threads may not exceed them")
    sw.add_argument("--batch", type=int, default=sweep_module.BATCH,
                    help=f"runs per batch at most (default {sweep_module.BATCH})")
    add_checkpoint_options(sw, "each batch")
    add_flow_options(sw, "every run")
    dask = sw.add_argument_group("Dask (the optional extra 'cluster'; docs/sweeps.md)")
    dask.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="run the batches on this running Dask scheduler (tcp://HOST:PORT, used as given)")
    dask.add_argument("--cluster", default=None, **one_of("cluster", cluster_module.KINDS), metavar="KIND",
                      help="start a Dask cluster for the sweep: local (worker processes on this machine, --workers "
                           "of them) or a job queue: slurm, pbs, sge")
    dask.add_argument("--jobs", type=int, default=None, help="job queue: jobs to submit (default 1)")
    dask.add_argument("--cores", type=int, default=None,
                      help="job queue: cores per job, one single-threaded worker each (default 1)")
    dask.add_argument("--memory", default=None, help="job queue: memory per job, e.g. 8GB (default 4GB)")
    dask.add_argument("--walltime", default=None, help="job queue: time limit per job, HH:MM:SS (default 01:00:00)")
    dask.add_argument("--queue", default=None, help="job queue: the queue or partition (default: the system's)")
    dask.add_argument("--job-script", action="store_true",
                      help="job queue: print the script each job would run, and exit without submitting")
    sw.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sw.add_argument("--out", required=True, type=path_arg, help="the sweep's store")


def _job_spec(args) -> cluster_module.JobSpec | None:
    """The job-queue options as a JobSpec (None without --cluster slurm|pbs|sge), refusing them elsewhere."""
    given = {k: getattr(args, k) for k in ("jobs", "cores", "memory", "walltime", "queue")}
    given = {k: v for k, v in given.items() if v is not None}
    if args.scheduler is not None and args.cluster is not None:
        raise errors.ConfigError("give either --scheduler ADDRESS or --cluster KIND, not both")
    if args.cluster not in cluster_module.QUEUES:
        if given:
            raise errors.ConfigError(f"--{next(iter(given))} is for a job queue: add --cluster slurm, pbs or sge")
        return None
    return cluster_module.JobSpec(args.cluster, **given)


def run(args) -> int:
    spec = {"preset": args.preset, "axes": {}, "seeds": [0], "steps": None}
    backend = args.backend
    if args.config is not None:
        spec = sweep_module.read_config(args.config)
        backend = backend or spec.pop("backend", None)
        if args.preset is not None and args.preset != spec["preset"]:
            raise errors.ConfigError(f"PRESET {args.preset} differs from --config's preset {spec['preset']}")
    elif args.preset is None:
        raise errors.ConfigError("give PRESET (dichotomy presets lists them) or --config SWEEP_TOML")
    for text in args.grid:
        name, values = sweep_module.parse_axis(text)
        if name in spec["axes"]:
            raise errors.ConfigError(f"--grid {name} is given twice")
        spec["axes"][name] = values
    if args.seeds is not None:
        spec["seeds"] = sweep_module.parse_seeds(args.seeds)
    if args.steps is not None:
        spec["steps"] = args.steps
    grid = sweep_module.grid(**spec)
    backend = get_backend(backend or "numba").name
    stepper = flow_of(args)
    flow = {"rtol": stepper.rtol} if stepper else None
    workers = None if args.workers is None else checks.positive_int("--workers", args.workers)
    threads = threads_of(args)
    batch = checks.positive_int("--batch", args.batch)
    job = _job_spec(args)
    if args.job_script:
        if job is None:
            raise errors.ConfigError("--job-script shows a job queue's script: give --cluster slurm, pbs or sge")
        print(cluster_module.job_script(job))
        return EXIT_OK
    if workers is not None and (args.scheduler is not None or job is not None):
        raise errors.ConfigError("--workers sizes local execution (a pool or --cluster local); a scheduler or job "
                                 "queue has its own workers")
    writable_dir(args.out)
    executor = contextlib.nullcontext(None)
    if args.scheduler is not None or args.cluster is not None:
        executor = cluster_module.executor(scheduler=args.scheduler, cluster=args.cluster, job=job, threads=threads,
                                           workers=workers or sweep_module.default_workers(threads=threads))
    with files.locked(args.out, "dichotomy sweep"), executor as execute:
        outcome = sweep_module.run(grid, args.out, backend=backend, dtype=args.dtype, workers=workers, batch=batch,
                                   checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                                   executor=execute, threads=threads, flow=flow)
    print(f"{outcome.total} runs: {outcome.reused} already stored, {outcome.trained} trained, "
          f"{len(outcome.failed)} failed; wrote {outcome.store}")
    for key, reason in outcome.failed.items():
        print(f"  failed: {key}: {one_line(reason)}")
    return EXIT_FAILED if outcome.failed else EXIT_OK
