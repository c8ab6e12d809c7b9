"""``dichotomy bench``: time each workload on each backend and on its peers, side by side in one run.

Every engine does the same float64 full-batch GD from the same initial parameters. Before anything is
timed, each runs a few steps and its parameters are compared with the NumPy oracle's (rtol 1e-8); an engine
that disagrees is reported and not timed. Times exclude compilation (one warm-up call) and are the median
of three calls of enough steps to take ~0.2 s each. The machine's ceilings are measured in the same run:
memory bandwidth (a 2-thread triad over arrays larger than the caches) and the float64 GEMM rate.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dichotomy import signals
from dichotomy.errors import ConfigError
from dichotomy.kernels import BACKENDS, BackendUnavailable, RunSpec, cores, get_backend
from dichotomy.kernels.tuning import host
from dichotomy.peers.timing import PEERS
from dichotomy.refimpl import checks, data, diagonal_net, matrix_factorization, models, relu_mlp
from dichotomy.run import gd_flow
from dichotomy.run.trajectory import versions
from dichotomy.store import files

log = logging.getLogger(__name__)

SEED = 20240505


@dataclass(frozen=True)
class Workload:
    """A benchmark problem: model, dataset and optimizer settings, and its cost per step."""

    name: str
    model: str  # a model NAME (refimpl.models)
    size: dict
    lr: float
    wd: float
    batch: int = 1  # > 1: numba trains this many runs in one call (weight decays spread by up to 2x)


WORKLOADS = {w.name: w for w in (
    Workload("diag-2k", diagonal_net.NAME, {"d": 2_000, "n": 100}, 0.01, 1e-2),  # fig1a-quick's size
    Workload("diag-20k", diagonal_net.NAME, {"d": 20_000, "n": 256}, 0.01, 1e-3),
    Workload("diag-100k", diagonal_net.NAME, {"d": 100_000, "n": 256}, 0.01, 1e-3),
    Workload("mc", matrix_factorization.NAME, {"d": 97}, 0.1, 1e-4),
    Workload("mlp-31", relu_mlp.NAME, {"p": 31, "h": 128}, 0.002, 1e-3),  # fig2a-quick's size
    Workload("mlp-256", relu_mlp.NAME, {"p": 97, "h": 256}, 0.002, 1e-4),
    Workload("mlp-1024", relu_mlp.NAME, {"p": 97, "h": 1024}, 0.002, 1e-4),
    Workload("diag-20k-b16", diagonal_net.NAME, {"d": 20_000, "n": 256}, 0.01, 1e-3, batch=16),
    Workload("mc-b16", matrix_factorization.NAME, {"d": 97}, 0.1, 1e-4, batch=16),
    Workload("mlp-256-b16", relu_mlp.NAME, {"p": 97, "h": 256}, 0.002, 1e-4, batch=16),
)}


def build(w: Workload):
    """(module, config, params, dataset) of a workload, seeded: the model's ``bench_problem`` of its size."""
    module, rng = models.get(w.model), np.random.default_rng(SEED)
    generator, data_args, model_args = module.bench_problem(w.size)
    ds = data.GENERATORS[generator](rng, **data_args)
    config = module.config_for(ds, **model_args)
    return module, config, module.init(config, rng), ds


def floor(module, config, ds, ceiling: dict) -> dict:
    """The least work a step of a workload needs (the model's ``step_work``) and the time it takes.

    ``module``, ``config`` and ``ds`` are the workload as :func:`build` made it. The time is at the measured
    ceilings: the larger of the bytes over the triad bandwidth and the FLOPs over the GEMM rate.
    """
    nbytes, flops = module.step_work(config, len(ds.y_train))
    seconds = max(nbytes / (1e9 * ceiling["bandwidth_GBps"]), flops / (1e9 * ceiling["gemm_GFLOPs"]))
    return {"bytes": nbytes, "flops": flops, "ms": 1e3 * seconds}


def _backend_engine(backend: str, module, config, params, ds, lr, wd, B: int, **options):
    """A backend's engine on the protocol with B runs; returns (advance(steps), run 0's params).

    Run 0 has the workload's wd, so it can be checked against the oracle; the others' weight decays are spread by up to
    2x.
    """
    return _backend_with_kernel(backend, module, config, params, ds, lr, wd, B, **options)[:2]


def _backend_with_kernel(backend: str, module, config, params, ds, lr, wd, B: int, **options):
    """:func:`_backend_engine` and a third callable: the engine's kernel choices, as a line."""
    runs = [RunSpec(config, checks.model_params(module, config, params), lr, wd * (1 + b / B)) for b in range(B)]
    factory = get_backend(backend, **options).engine
    reason = factory.unsupported(module, runs, ds, "float64", None)
    if reason is not None:
        raise ConfigError(f"the {backend} backend cannot run this workload: {reason}")
    engine = factory(module, runs, ds)
    return engine.advance, lambda: engine.params()[0], lambda: _kernel(engine)


def _kernel(engine) -> str:
    """What a numba engine chose: its layout, its thread count, and the steps run at each count."""
    if not hasattr(engine, "kernel_info"):
        return ""
    info = {k: v for k, v in engine.kernel_info().items() if k != "blas"}
    governor = getattr(engine, "governor", None)
    if getattr(engine, "THREAD_FREE", False) and governor is not None and len(governor.options) > 1:
        total = sum(governor.steps.values()) or 1
        info["threads"] = " / ".join(f"{n}: {100 * k / total:.0f}%" for n, k in governor.steps.items())
    return ", ".join(f"{k} {v}" for k, v in info.items())


def engines(module, config, params, ds, lr, wd, names, batch: int = 1) -> dict:
    """name -> (advance, params) for each engine that can run here; a missing one maps to its reason."""
    X = ds.X_train.astype(np.float64) if ds.X_train.dtype == np.int8 else ds.X_train
    out = {}
    for name in names:
        try:
            if name in BACKENDS:  # numpy: the single run the batches are compared with
                out[name] = _backend_with_kernel(name, module, config, params, ds, lr, wd,
                                                 1 if name == "numpy" else batch)
            elif batch > 1:
                out[name] = "batched workloads compare the backends' batches with NumPy's single run"
            else:
                out[name] = PEERS[name](module, params, X, ds.y_train, lr, wd)  # the model's STANDARD_LOSS
        except (BackendUnavailable, ConfigError) as e:
            out[name] = str(e)
    return out


def check_engines(names: list[str]) -> list[str]:
    """The engine names, or a one-line ConfigError naming the first unknown one."""
    known = (*BACKENDS, *PEERS)
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown engine {name!r}; choose from {', '.join(known)}")
    return list(names)


def _agree(got: dict, want: dict) -> float:
    """Largest parameter difference relative to each array's scale."""
    return max(float(np.abs(got[k] - want[k]).max() / max(np.abs(want[k]).max(), 1e-300)) for k in want)


def _time(advance, budget: float = 0.2) -> float:
    """Seconds per step: median of three calls of enough steps to take ``budget`` seconds."""
    advance(1)  # warm-up: compilation, caches
    steps = 1
    while True:
        t = time.perf_counter()
        advance(steps)
        if time.perf_counter() - t >= budget or steps >= 1 << 20:
            break
        steps *= 2
    times = []
    for _ in range(3):
        t = time.perf_counter()
        advance(steps)
        times.append((time.perf_counter() - t) / steps)
    return float(np.median(times))


def ceilings() -> dict:
    """Memory bandwidth (GB/s, 2-thread triad over 3 x 64 MB) and float64 GEMM rate (GFLOP/s, n = 2000)."""
    from dichotomy.kernels.numba.triad import triad as _triad  # the package sets the OpenMP wait first

    b, c = np.random.default_rng(0).random((2, 8_000_000))
    a = np.empty_like(b)
    _triad(a, b, c, 0.5)
    bw = []
    for _ in range(5):
        t = time.perf_counter()
        _triad(a, b, c, 0.5)
        bw.append(24 * a.size / (time.perf_counter() - t) / 1e9)
    A = np.random.default_rng(1).random((2000, 2000))
    A @ A
    gemm = []
    for _ in range(3):
        t = time.perf_counter()
        A @ A
        gemm.append(2 * 2000**3 / (time.perf_counter() - t) / 1e9)
    return {"bandwidth_GBps": float(np.median(bw)), "gemm_GFLOPs": float(np.median(gemm))}


BUSY = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def busy(n: int, seconds: float = 900.0):
    """``n`` competitor processes spinning on a core each for the block.

    Each stops by itself after ``seconds``, so none outlives a killed bench.
    """
    procs = [subprocess.Popen([sys.executable, "-c", BUSY, str(seconds)], stdin=subprocess.DEVNULL)
             for _ in range(n)]
    try:
        time.sleep(0.2 if n else 0.0)  # let them start spinning
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


@dataclass
class Result:
    workload: str
    engine: str
    ms_per_step: float | None
    agreement: float | None
    note: str = ""
    ratio_to_fastest_peer: float | None = None  # batched workloads: NumPy's single run over the per-run step
    roofline_fraction: float | None = None  # the workload's floor time (``floor``) over this engine's step
    kernel: str = ""  # numba: the layout and thread counts it chose while timed
    loaded_ms_per_step: float | None = None  # beside ``load`` busy processes (bench(load=N))
    loaded_one_thread_ms: float | None = None  # numba pinned to one thread, beside the same load


def bench(names: list[str], engine_names: list[str], *, check_steps: int = 3, rtol: float = 1e-8,
          progress=log.info, load: int = 0, flow: bool = False) -> dict:
    """Run every workload in ``names`` on every engine in ``engine_names``; return the report dict.

    An engine whose parameters differ from the oracle's by more than ``rtol`` (relative to each array's scale)
    after ``check_steps`` steps is reported and not timed. ``progress`` receives a line per timed engine
    (default: this module's logger, at INFO). With ``load`` = N > 0, every timed engine is timed again beside N
    busy processes (:func:`busy`), right after its idle timing, and numba once more pinned to one thread.
    With ``flow``, :func:`flow_rows` adds the gradient flow's cost per unit of time beside GD's.
    """
    engine_names = check_engines(engine_names)
    load = checks.positive_int("load", load, minimum=0)
    _choose_kernels(names, engine_names)
    ceiling = ceilings()
    progress(f"ceilings: {ceiling['bandwidth_GBps']:.1f} GB/s, {ceiling['gemm_GFLOPs']:.1f} GFLOP/s")
    results, floors = [], {}
    for wname in names:
        w = WORKLOADS[wname]
        module, config, params, ds = build(w)
        floors[wname] = floor(module, config, ds, ceiling)
        built = engines(module, config, params, ds, w.lr, w.wd, engine_names, w.batch)
        reference = None
        rows = []
        for name, made in built.items():
            signals.check()  # a Ctrl-C noted while Numba compiled the last engine: honoured before the next one
            if isinstance(made, str):
                rows.append(Result(wname, name, None, None, made))
                continue
            advance, current, *kernel = made
            advance(check_steps)
            P = current()
            if reference is None:
                ref_advance, ref_params = _backend_engine("numpy", module, config, params, ds, w.lr, w.wd, 1)
                ref_advance(check_steps)
                reference = ref_params()
            err = _agree(P, reference)
            if not err <= rtol:
                rows.append(Result(wname, name, None, err, f"disagrees with the oracle after {check_steps} steps"))
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                ms = 1e3 * _time(advance)
            if not all(np.all(np.isfinite(v)) for v in current().values()):
                rows.append(Result(wname, name, None, err, "diverged while being timed: lower the workload's lr"))
                continue
            per = w.batch if name in BACKENDS and name != "numpy" and w.batch > 1 else 1  # per run-step
            row = Result(wname, name, ms / per, err, f"{w.batch} runs per call; ms per run-step" if per > 1 else "")
            row.kernel = kernel[0]() if kernel else ""
            if load:
                row.loaded_ms_per_step, row.loaded_one_thread_ms = _loaded(advance, name, w, module, config, params,
                                                                           ds, load, per)
            rows.append(row)
            progress(f"{wname:12s} {name:6s} {row.ms_per_step:9.3f} ms/step"
                     + (f", {row.loaded_ms_per_step:9.3f} beside {load} busy" if load else "")
                     + (f" ({row.kernel})" if row.kernel else ""))
        _ratios(rows, w, floors[wname])
        results.extend(rows)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": host(), "ceilings": ceiling, "versions": versions(),
              "floors": floors, "load": load, "threading": threading_env(), "results": [asdict(r) for r in results]}
    if flow:
        report["flow"] = flow_rows(names, engine_names, report["results"], progress)
    return report


def flow_rows(names: list[str], engine_names: list[str], results: list[dict], progress=log.info) -> list[dict]:
    """:func:`dichotomy.run.gd_flow.timed_flow` of each single-run workload on numpy and numba, beside GD's row.

    GD's wall for the same time is its row of ``results`` (ms per step x FLOW_STEPS): ``gd_over_flow`` > 1 where the
    flow is the cheaper way to that time.
    """
    rows = []
    for wname in (n for n in names if WORKLOADS[n].batch == 1):
        w = WORKLOADS[wname]
        module, config, params, ds = build(w)
        for name in (n for n in engine_names if n in ("numpy", "numba")):
            signals.check()
            row = {"workload": wname, "engine": name, **gd_flow.timed_flow(get_backend(name), module, config, params,
                                                                            ds, lr=w.lr, wd=w.wd)}
            gd = next((r["ms_per_step"] for r in results if r["workload"] == wname and r["engine"] == name), None)
            if "time" in row:
                row["gd_s"] = None if gd is None else gd * gd_flow.FLOW_STEPS / 1e3
                row["gd_over_flow"] = None if gd is None else row["gd_s"] / row["flow_s"]
                progress(f"{wname:12s} {name:6s} flow to t = {row['time']:g}: {row['flow_s']:.3f} s, "
                         f"{row['grad_evals']} gradients" + (f" (GD: {row['gd_s']:.3f} s)" if gd else ""))
            rows.append(row)
    return rows


def _choose_kernels(names: list[str], engine_names: list[str]) -> None:
    """Make the backends' host-dependent choices (kernels/tuning.py) for every workload before any peer runs.

    Choosing later would be timed wrong: JAX's worker threads keep spinning after it ran and slowed the timed trials
    beside them (the numpy backend's BLAS at d = 1e5 measured 25-32 ms at 2 threads instead of 14, and chose 1).
    """
    for wname in names:
        w = WORKLOADS[wname]
        module, config, params, ds = build(w)
        for name in engine_names:
            signals.check()
            if name in BACKENDS:
                try:
                    B = 1 if name == "numpy" else w.batch
                    _backend_engine(name, module, config, params, ds, w.lr, w.wd, B)[0](1)
                except (BackendUnavailable, ConfigError):
                    continue  # engines() reports it


def _loaded(advance, name, w, module, config, params, ds, load, per) -> tuple[float, float | None]:
    """ms per (run-)step of ``advance`` beside ``load`` busy processes, and the same on one thread for numba.

    The second value is for numba only: the same engine pinned to one thread beside the same load.
    """
    with busy(load), np.errstate(over="ignore", invalid="ignore"):
        loaded = 1e3 * _time(advance) / per
        one = None
        if name == "numba":
            advance_one = _backend_engine("numba", module, config, params, ds, w.lr, w.wd, w.batch, threads=1)[0]
            one = 1e3 * _time(advance_one) / per
    return loaded, one


def threading_env() -> dict:
    """What sets the engines' threads here: available cores, Numba's layer and count, the wait policy."""
    import numba

    layer = None
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        pass
    return {"available_cores": cores.available_cores(), "numba_threads": numba.get_num_threads(),
            "threading_layer": layer, **{k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                                      "NUMBA_NUM_THREADS") if k in os.environ}}


def _ratios(rows, w, least):
    """Each compiled engine's speed-up and every engine's roofline fraction.

    The speed-up is over the fastest peer for single runs and over NumPy's single run for batches; the roofline fraction
    is the floor's time over the engine's step time.
    """
    timed = {r.engine: r.ms_per_step for r in rows if r.ms_per_step}
    peers = [t for name, t in timed.items() if name in PEERS or name == "numpy"]
    for r in rows:
        if not r.ms_per_step:
            continue
        if r.engine in ("numba", "cupy"):
            if w.batch > 1 and "numpy" in timed:
                r.ratio_to_fastest_peer = timed["numpy"] / r.ms_per_step
            elif w.batch == 1 and peers:
                r.ratio_to_fastest_peer = min(peers) / r.ms_per_step
        r.roofline_fraction = least["ms"] / r.ms_per_step


def markdown(report: dict) -> str:
    """The report as a markdown table (with the ceilings and versions above it)."""
    c, v, m = report["ceilings"], report["versions"], report["machine"]
    machine = f"{m['cpu']} ({m['isa']}, {m['cores']} logical cores)" if isinstance(m, dict) else m
    load = report.get("load", 0)
    loaded = ["beside load ms/step", "slowdown", "vs 1 thread"] if load else []
    lines = [f"Measured {report['date']} on {machine}: memory {c['bandwidth_GBps']:.1f} GB/s (2-thread "
             f"triad), float64 GEMM {c['gemm_GFLOPs']:.1f} GFLOP/s. "
             + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", ""]
    if report.get("threading"):
        lines[0] += " Threads: " + ", ".join(f"{k} {val}" for k, val in report["threading"].items()) + "."
    if load:
        lines[0] += (f" Loaded columns: the same engine beside {load} busy process{'es' if load > 1 else ''}, "
                     "timed right after the idle column; slowdown = loaded / idle; vs 1 thread = loaded / the numba "
                     "engine pinned to one thread beside the same load.")
    lines += ["| " + " | ".join(["workload", "engine", "ms/step", "steps/s", "speed-up", "roofline fraction", *loaded,
                                 "kernel", "note"]) + " |",
              "|---|---|---:|---:|---:|---:|" + "---:|" * len(loaded) + "---|---|"]
    for r in report["results"]:
        ms = r["ms_per_step"]
        cells = [r["workload"], r["engine"], f"{ms:.3f}" if ms else "—", f"{1e3 / ms:,.0f}" if ms else "—",
                 f"{r['ratio_to_fastest_peer']:.2f}×" if r["ratio_to_fastest_peer"] else "",
                 f"{r['roofline_fraction']:.2f}" if r["roofline_fraction"] else ""]
        if load:
            lm, one = r.get("loaded_ms_per_step"), r.get("loaded_one_thread_ms")
            cells += [f"{lm:.3f}" if lm else "—", f"{lm / ms:.2f}×" if lm and ms else "",
                      f"{lm / one:.2f}×" if lm and one else ""]
        cells += [r.get("kernel", ""), r["note"]]
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("floors"):
        lines += ["", "Floors at these ceilings (ms per step): " + ", ".join(
            f"{name} {least['ms']:.3g}" for name, least in report["floors"].items()) + "."]
    if report.get("flow"):
        lines += ["", *gd_flow.flow_table(report["flow"])]
    return "\n".join(lines) + "\n"


def load(path: Path) -> dict:
    """A report saved by :func:`write` (bench.json), to render again without timing anything."""
    report = files.read_json(path)
    if not isinstance(report, dict) or not {"date", "machine", "ceilings", "versions", "results"} <= set(report):
        raise ConfigError(f"{path} is missing or not a bench report (the bench.json dichotomy bench writes)")
    return report


def write(report: dict, out: Path, docs: Path | None = None) -> list[Path]:
    """bench.json and bench.md in ``out``; with ``docs``, also replace its marked benchmark section."""
    table = markdown(report)
    paths = [files.write_json(out / "bench.json", report), files.write_text(out / "bench.md", table)]
    if docs is not None:
        start, end = "<!-- bench:cpu:start -->", "<!-- bench:cpu:end -->"
        text = docs.read_text() if docs.exists() else ""
        block = f"{start}\n{table}{end}"
        text = (text[:text.index(start)] + block + text[text.index(end) + len(end):]) if start in text else \
            text + "\n" + block + "\n"
        paths.append(files.write_text(docs, text))
    return paths
