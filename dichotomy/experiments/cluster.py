"""A sweep's tasks on Dask: a running scheduler, a LocalCluster, or workers started through a job queue.

The optional extra ``cluster`` (``pip install "dichotomy-grokking[cluster]"``) brings Dask distributed and
dask-jobqueue; nothing here schedules anything itself. :func:`executor` opens a :class:`DaskExecutor` on

- a running scheduler (``--scheduler tcp://HOST:PORT``, the address used exactly as given);
- a ``distributed.LocalCluster`` on the loopback interface (``--cluster local``): worker processes on this
  machine, each one task at a time with an equal share of the cores for the engine's threads;
- SLURM, PBS or SGE (``--cluster slurm|pbs|sge --jobs N --cores C --memory M --walltime T``): dask-jobqueue
  submits N jobs, each running C single-threaded worker processes (one task per core).

Each task is :func:`sweep.run_attempt`: it counts its starts in its checkpoint folder, so a task whose worker
dies is started again (the scheduler reschedules it) and resumes from its last checkpoint, once
(:data:`sweep.RETRIES`); a third start reports it failed while the other tasks finish. The workers write the
runs into the sweep's folder, so on a cluster that folder must be on a file system every node mounts.
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass

from dichotomy.errors import ConfigError
from dichotomy.kernels import cores
from dichotomy.refimpl import checks

EXTRA = 'pip install "dichotomy-grokking[cluster]"'
QUEUES = {"slurm": ("SLURMCluster", "sbatch"), "pbs": ("PBSCluster", "qsub"), "sge": ("SGECluster", "qsub")}
KINDS = ("local", *QUEUES)
CONNECT_TIMEOUT = "10s"
# every job's workers run one task at a time on one core: the engines' thread pools stay at one thread
_PROLOGUE = ["export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"]


@dataclass(frozen=True)
class JobSpec:
    """What each of the ``jobs`` jobs of a job queue asks for.

    Each job asks for ``cores`` (one worker process each), ``memory`` (Dask's notation, "8GB"), ``walltime``
    ([D-]HH:MM[:SS]) and optionally a ``queue``.
    """

    kind: str
    jobs: int = 1
    cores: int = 1
    memory: str = "4GB"
    walltime: str = "01:00:00"
    queue: str | None = None

    def __post_init__(self):
        if self.kind not in QUEUES:
            raise ConfigError(f"--cluster {self.kind}: choose from {', '.join(KINDS)}")
        checks.positive_int("--jobs", self.jobs)
        checks.positive_int("--cores", self.cores)
        if not re.fullmatch(r"(\d+-)?\d{1,3}:\d{2}(:\d{2})?", str(self.walltime)):
            raise ConfigError(f"--walltime {self.walltime!r}: write HH:MM:SS (or D-HH:MM:SS), e.g. 02:00:00")


def _require(option: str):
    """``distributed``, or a one-line error naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"{option} needs Dask distributed, the optional extra 'cluster': {EXTRA}") from None
    return distributed


def _memory(text: str) -> str:
    from dask.utils import parse_bytes

    try:
        if parse_bytes(text) <= 0:
            raise ValueError
    except (ValueError, TypeError):
        raise ConfigError(f"--memory {text!r}: write an amount like 4GB or 500MiB") from None
    return text


def job_cluster(spec: JobSpec):
    """The dask-jobqueue cluster for ``spec``, no job submitted yet (``.job_script()`` shows what would be)."""
    _require(f"--cluster {spec.kind}")
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError(f"--cluster {spec.kind} needs dask-jobqueue, the optional extra 'cluster': {EXTRA}") from None
    cls = getattr(dask_jobqueue, QUEUES[spec.kind][0])
    options = {"cores": spec.cores, "processes": spec.cores, "memory": _memory(spec.memory),
               "walltime": spec.walltime, "job_script_prologue": _PROLOGUE, "job_name": "dichotomy-sweep"}
    if spec.queue:
        options["queue"] = spec.queue
    return cls(**options)


def job_script(spec: JobSpec) -> str:
    """The script each job would run, rendered without submitting anything (no job queue needed)."""
    cluster = job_cluster(spec)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


class DaskExecutor:
    """Runs a sweep's tasks on a ``distributed.Client``: every task submitted at once, results taken as they come.

    ``threads`` sets each task's engine threads (None: the worker's default); ``workers`` is how many tasks run at once
    (None: unknown), which the sweep uses to size its batches.
    """

    def __init__(self, client, threads: int | None, workers: int | None):
        self.client = client
        self.threads = threads
        self.workers = workers  # how many tasks can run at once (None: unknown), for sizing the batches

    def __call__(self, todo, on_done, on_failed) -> None:
        from distributed import as_completed

        from dichotomy.experiments import sweep

        futures = {self.client.submit(sweep.run_attempt, t, self.threads, key=f"dichotomy-task-{t.key}",
                                      pure=False): t for t in todo}
        for future in as_completed(futures):
            t = futures[future]
            try:
                keys = future.result()
            except Exception as e:  # the task's own error, a worker lost for good (KilledWorker): the others go on
                on_failed(t, f"{type(e).__name__}: {e}")
            else:
                on_done(t, keys)
            future.release()


@contextmanager
def executor(*, scheduler: str | None = None, cluster: str | None = None, workers: int = 1,
             job: JobSpec | None = None, threads: int | None = None):
    """A :class:`DaskExecutor` on a running ``scheduler``, or on a cluster this call starts and stops.

    The cluster is ``cluster="local"`` (``workers`` processes on 127.0.0.1) or a job queue (``job``). Closed on exit.
    Each task's engine runs at most ``threads`` threads (default: a local worker's share of the cores this process may
    use, one on a job queue's cores, the worker's own setting on a running scheduler).
    """
    if (scheduler is None) == (cluster is None):
        raise ConfigError("give either --scheduler ADDRESS or --cluster KIND, not both")
    distributed = _require("--scheduler" if scheduler is not None else f"--cluster {cluster}")
    started = None
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there ({e})") from None
        workers = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values()) or None
    elif cluster == "local":
        workers = checks.positive_int("--workers", workers)
        started = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        client = distributed.Client(started)
        threads = cores.threads_per_worker(workers, threads)  # workers x threads within the cores we may use
    else:
        if job is None or job.kind != cluster:
            raise ConfigError(f"--cluster {cluster}: choose from {', '.join(KINDS)}")
        submit = QUEUES[cluster][1]
        if shutil.which(submit) is None:
            raise ConfigError(f"--cluster {cluster}: {submit} is not on PATH; run the sweep where jobs are submitted "
                              "(the cluster's login node)")
        started = job_cluster(job)
        started.scale(jobs=job.jobs)
        client = distributed.Client(started)
        threads, workers = threads or 1, job.jobs * job.cores
    try:
        yield DaskExecutor(client, threads, workers)
    finally:
        client.close()
        if started is not None:
            started.close()
