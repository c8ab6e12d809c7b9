"""Runs per hour of the scaling sweep, four ways, measured side by side in one run (docs/benchmarks.md).

    python tests/benchmarks/bench_sweep.py [--steps N] [--json PATH]

The sweep is the scaling claim's quick grid as one phase diagram: fig1a-quick at alpha in {128, 512, 2048,
8192} x lambda in {1, 2, 4, 8}e-2, one seed (16 runs on one dataset). It is trained four times, each into a
fresh store, on the numba backend:

- one by one: each run alone, in this process (``--workers 1 --batch 1``);
- batched: all 16 as one batch of the engine, in this process (``--workers 1``);
- local pool: the default, a process per core, the runs split into one batch per process;
- LocalCluster: the same on a ``distributed.LocalCluster`` on 127.0.0.1 (``--cluster local``), its start and stop
  included.

The stores are checked equal (xarray.testing.assert_identical) before any figure is printed. A small sweep runs
first in this process so that the kernels are compiled and cached (numba's on-disk cache, which the workers
load). Not a test: run it by hand on a quiet machine.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import xarray as xr

from dichotomy.experiments import cluster, sweep

AXES = {"alpha": [128.0, 512.0, 2048.0, 8192.0], "wd": [1e-2, 2e-2, 4e-2, 8e-2]}


def _timed(g, out, **kwargs) -> float:
    start = time.perf_counter()
    outcome = sweep.run(g, out, backend="numba", progress=False, **kwargs)
    seconds = time.perf_counter() - start
    if outcome.failed or outcome.trained != outcome.total:
        sys.exit(f"bench_sweep: {out}: {outcome.failed or 'runs were reused'}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000, help="steps per run (default 60000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    g = sweep.grid("fig1a-quick", AXES, seeds=[0], steps=args.steps)
    runs = len(sweep.plan(g, backend="numba"))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        tmp = Path(tmp)
        sweep.run(sweep.grid("fig1a-quick", {"alpha": [64.0, 128.0]}, steps=200), tmp / "warm", backend="numba",
                  workers=1, progress=False)
        seconds = {"one by one": _timed(g, tmp / "one", workers=1, batch=1),
                   "batched": _timed(g, tmp / "batched", workers=1),
                   "local pool": _timed(g, tmp / "pool")}
        start = time.perf_counter()
        with cluster.executor(cluster="local", workers=cores) as ex:
            started = time.perf_counter() - start
            seconds["LocalCluster"] = started + _timed(g, tmp / "dask", executor=ex)
        stores = {}
        for name, folder in (("one by one", "one"), ("batched", "batched"), ("local pool", "pool"),
                             ("LocalCluster", "dask")):
            with xr.open_dataset(tmp / folder / sweep.STORE_FILE) as ds:
                stores[name] = ds.load()
        for ds in stores.values():
            xr.testing.assert_identical(ds, stores["one by one"])
    print(f"scaling sweep: fig1a-quick, {runs} runs of {args.steps:,} steps (alpha x lambda = 4 x 4), numba, "
          f"{cores} cores ({platform.processor() or platform.machine()}); stores identical")
    print(f"{'executor':14s} {'seconds':>8s} {'runs/hour':>10s} {'vs one by one':>14s}")
    base = seconds["one by one"]
    rows = []
    for name, s in seconds.items():
        rows.append({"executor": name, "seconds": s, "runs_per_hour": runs * 3600 / s, "speedup": base / s})
        print(f"{name:14s} {s:8.1f} {runs * 3600 / s:10.0f} {base / s:13.2f}x")
    print(f"(LocalCluster: {started:.1f} s of it to start the cluster and its {cores} workers)")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "steps": args.steps, "cores": cores, "rows": rows,
                                         "cluster_start_seconds": started}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
