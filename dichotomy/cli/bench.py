"""dichotomy bench: every workload on every engine, timed side by side."""

from __future__ import annotations

from dichotomy import bench as bench_module
from dichotomy import errors
from dichotomy.cli.common import EXIT_OK, choices, one_of, path_arg, writable_dir, writable_file
from dichotomy.kernels import BACKENDS
from dichotomy.refimpl import checks
from dichotomy.run.gd_flow import FLOW_STEPS
from dichotomy.store import files

NAME = "bench"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    engines = (*BACKENDS, *bench_module.PEERS)
    bench = command("bench", "time every workload on every engine, side by side (docs/benchmarks.md)",
                    "Time every workload on every engine in one run, after checking each engine's parameters "
                    "against the float64 reference, and write OUT/bench.json and OUT/bench.md.")
    bench.add_argument("--workload", nargs="+", default=None, **one_of("workload", bench_module.WORKLOADS),
                       metavar="WORKLOAD", help=f"workloads (default: all): {choices(bench_module.WORKLOADS)}")
    bench.add_argument("--engine", nargs="+", default=["numpy", "numba", "torch", "jax"], **one_of("engine", engines),
                       metavar="ENGINE", help=f"engines to time (default: numpy numba torch jax): "
                       f"{choices(engines)}; torch and jax need the peers extra")
    bench.add_argument("--rtol", type=float, default=1e-8,
                       help="largest relative parameter difference from the reference for an engine to be timed "
                            "(default 1e-8)")
    bench.add_argument("--load", type=int, default=0, metavar="N",
                       help="also time every engine beside N busy processes (started and stopped by the bench; "
                            "one per core is a fully busy machine), and report each one's slowdown (default 0)")
    bench.add_argument("--flow", action="store_true",
                       help="also integrate the gradient flow of every single-run workload to the time GD reaches in "
                            f"{FLOW_STEPS:,} steps, and report its gradients and wall per unit of time "
                            "beside GD's (numpy and numba)")
    bench.add_argument("--out", required=True, type=path_arg, help="output directory for bench.json and bench.md")
    bench.add_argument("--docs", type=path_arg, default=None, help="also write the table into this markdown file")
    bench.add_argument("--json", type=path_arg, default=None,
                       help="also write the report (times, ratios, roofline fractions, floors, ceilings, host) to "
                            "this JSON file")
    bench.add_argument("--from-json", type=path_arg, default=None, metavar="BENCH_JSON",
                       help="time nothing: render the report saved in this bench.json (its ratios, roofline "
                            "fractions and ceilings) into --out and --docs")


def run(args) -> int:
    names = args.workload or list(bench_module.WORKLOADS)
    unknown = [n for n in names if n not in bench_module.WORKLOADS]
    if unknown:
        raise errors.ConfigError(f"unknown workload {unknown[0]!r}; choose from {choices(bench_module.WORKLOADS)}")
    engines = bench_module.check_engines(args.engine)
    rtol = checks.positive("rtol", args.rtol)
    for option, path in (("--docs", args.docs), ("--json", args.json)):
        if path is not None:
            writable_file(path, option)
    saved = bench_module.load(args.from_json) if args.from_json is not None else None
    writable_dir(args.out)
    with files.locked(args.out, "dichotomy bench"):
        report = saved or bench_module.bench(names, engines, rtol=rtol, load=args.load, flow=args.flow)
        paths = bench_module.write(report, args.out, args.docs)
        if args.json is not None:
            paths.append(files.write_json(args.json, report))
    print(bench_module.markdown(report) + f"wrote {', '.join(map(str, paths))}")
    return EXIT_OK
