"""Sweeps on Dask (dichotomy/experiments/cluster.py): a LocalCluster on the loopback interface gives the store the local
executor gives, a worker killed mid-run is retried from its checkpoint, the job queues' scripts render without a
job queue, and every way of asking for a cluster that cannot work is a one-line error before anything runs."""

import os
import signal
import sys
import threading
import time

import pytest
import xarray as xr

from dichotomy.cli import main
from dichotomy.errors import ConfigError
from dichotomy.experiments import cluster, sweep

pytest.importorskip("distributed", reason="the optional extra 'cluster' is not installed")

SMALL = {"alpha": ["5", "10"], "wd": ["2e-3", "4e-3"]}


def _metrics(path):
    with xr.open_dataset(path) as ds:
        return ds.load()


def test_a_local_cluster_gives_the_store_the_local_executor_gives_and_survives_a_killed_worker(tmp_path):
    """2 alpha x 2 lambda x 2 seeds through the process pool and through a LocalCluster: identical stores. Then a
    longer sweep on the cluster whose worker is killed with SIGKILL once its task has checkpointed: the nanny starts
    a new worker, the task resumes from its checkpoint, and the store equals an uninterrupted sweep's."""
    g = sweep.grid("fig3-quick", SMALL, seeds=[0, 1], steps=300)
    local = sweep.run(g, tmp_path / "local", backend="numba", workers=2, batch=2, progress=False)
    long = sweep.grid("fig3-quick", {"alpha": ["5", "10"]}, seeds=[0], steps=40_000)
    out = tmp_path / "killed"
    with cluster.executor(cluster="local", workers=2) as ex:
        on_dask = sweep.run(g, tmp_path / "dask", backend="numba", batch=2, progress=False, executor=ex)
        pids = list(ex.client.run(os.getpid).values())
        killed = []

        def killer():
            deadline = time.time() + 120
            while time.time() < deadline and not killed:
                if list((out / "checkpoints").glob("*/*.npz")):
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                time.sleep(0.05)

        thread = threading.Thread(target=killer)
        thread.start()
        survived = sweep.run(long, out, backend="numba", checkpoint_every=0.1, progress=False, executor=ex)
        thread.join()
    assert on_dask.failed == {} and on_dask.trained == 8
    xr.testing.assert_identical(_metrics(local.store), _metrics(on_dask.store))
    assert killed, "the runs finished before a worker could be killed: lengthen them"
    assert survived.failed == {} and survived.trained == 2
    clean = sweep.run(long, tmp_path / "clean", backend="numba", workers=1, progress=False)
    xr.testing.assert_identical(_metrics(survived.store), _metrics(clean.store))


def test_a_task_whose_worker_died_twice_is_reported_failed_and_not_started_again(tmp_path):
    g = sweep.grid("fig3-quick", {"alpha": ["5"]}, steps=100)
    (task,) = sweep.tasks(sweep.plan(g, backend="numba"), backend="numba", dtype="float64", out=tmp_path)
    from dichotomy.store import files
    files.write_json(sweep._attempts_file(task), {"started": 1 + sweep.RETRIES})
    with pytest.raises(sweep.WorkerDied, match="its worker died 2 times"):
        sweep.run_attempt(task)
    assert not (tmp_path / "runs").exists()
    # a new sweep gives every task its retries again
    assert sweep.run(g, tmp_path, backend="numba", workers=1, progress=False).trained == 1


@pytest.mark.parametrize("kind, directives", [
    ("slurm", ["#SBATCH --cpus-per-task=4", "#SBATCH --mem=", "#SBATCH -t 02:30:00", "#SBATCH -p short"]),
    ("pbs", ["#PBS -l select=1:ncpus=4", "#PBS -l walltime=02:30:00", "#PBS -q short"]),
    ("sge", ["#$ -l h_rt=02:30:00", "#$ -q short"]),
])
def test_the_job_queue_script_asks_for_what_was_given(kind, directives, capsys, tmp_path):
    spec = cluster.JobSpec(kind, jobs=3, cores=4, memory="8GB", walltime="02:30:00", queue="short")
    script = cluster.job_script(spec)
    for line in directives:
        assert line in script, f"{line!r} not in\n{script}"
    assert "--nworkers 4" in script and "--nthreads 1" in script and "NUMBA_NUM_THREADS=1" in script
    assert "distributed.cli.dask_worker" in script
    # the same through the command, which submits nothing
    assert main(["sweep", "fig3-quick", "--grid", "alpha=5", "--cluster", kind, "--cores", "4", "--memory", "8GB",
                 "--walltime", "02:30:00", "--queue", "short", "--job-script", "--out", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out
    assert all(line in printed for line in directives)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "tcp://127.0.0.1:9"], "--scheduler tcp://127.0.0.1:9: no Dask scheduler answers there"),
    (["--scheduler", "tcp://127.0.0.1:9", "--cluster", "local"], "either --scheduler ADDRESS or --cluster KIND"),
    (["--cluster", "slurm"], "sbatch is not on PATH"),
    (["--cluster", "pbs", "--memory", "lots", "--job-script"], "--memory 'lots': write an amount like 4GB"),
    (["--cluster", "sge", "--walltime", "2h", "--job-script"], "--walltime '2h': write HH:MM:SS"),
    (["--cluster", "slurm", "--cores", "0", "--job-script"], "--cores"),
    (["--jobs", "3"], "--jobs is for a job queue: add --cluster"),
    (["--cluster", "local", "--job-script"], "--job-script shows a job queue's script"),
    (["--cluster", "yarn"], "cluster"),
])
def test_a_cluster_that_cannot_work_is_a_one_line_error(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, qsub
    assert main(["sweep", "fig3-quick", "--grid", "alpha=5", *args, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_without_the_extra_the_dask_options_name_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ConfigError, match=r"the optional extra 'cluster': pip install"):
        with cluster.executor(scheduler="tcp://127.0.0.1:8786"):
            pass
    assert main(["sweep", "fig3-quick", "--cluster", "local", "--out", str(tmp_path / "s")]) == 2
    assert "dichotomy-grokking[cluster]" in capsys.readouterr().err
