"""dichotomy gd-flow: how far is my GD from the gradient flow? Both from one initialization, compared as they go."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dichotomy.cli.common import (
    EXIT_OK,
    add_thread_options,
    backend_of,
    choices,
    one_of,
    path_arg,
    writable_dir,
)
from dichotomy.cli.train import OPTIONS
from dichotomy.experiments import presets
from dichotomy.run.gd_flow import gd_vs_flow
from dichotomy.run.trajectory import record_steps
from dichotomy.store import files

NAME = "gd-flow"
OVERRIDES = ("--steps", "--lr", "--wd", "--seed", "--init-seed", "--alpha", "--d", "--n-train", "--n-test")


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    gf = command("gd-flow", "GD beside the gradient flow from one initialization: how far apart, step by step",
                 "Train a preset with GD and integrate its gradient flow from the same initialization; at every "
                 "recorded step s report ||theta_GD(s) - theta_flow(lr s)|| / ||theta_flow|| and both runs' "
                 "metrics. GD is the flow's Euler method: the distance is O(lr) while lr x sharpness stays below 2 "
                 "(docs/math.md §7). Prints a summary; with --out, writes OUT/gd_flow.json and OUT/gd_flow.png.")
    gf.add_argument("--preset", required=True, **one_of("preset", presets.PRESETS), metavar="NAME",
                    help="named experiment, see 'dichotomy presets' (" + choices(presets.PRESETS) + ")")
    for flag in OVERRIDES:
        _, kind, text, _ = OPTIONS[flag]
        gf.add_argument(flag, type=kind, default=None, help=text)
    gf.add_argument("--rtol", type=float, default=1e-6, metavar="R",
                    help="the flow's local error tolerance, relative to ||theta|| (default 1e-6)")
    gf.add_argument("--backend", default="numba", **one_of("backend", ("numpy", "numba")),
                    help="the backend of both runs (default numba)")
    add_thread_options(gf)
    gf.add_argument("--out", type=path_arg, default=None, help="also write gd_flow.json and gd_flow.png here")
    gf.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    changes = {field: getattr(args, flag[2:].replace("-", "_")) for flag in OVERRIDES
               for field in (OPTIONS[flag][0],)}
    preset = presets.override(presets.get(args.preset), **{k: v for k, v in changes.items() if v is not None})
    backend = backend_of(args)
    out = writable_dir(args.out) if args.out is not None else None
    module, config, params, data = presets.build(preset)
    result = gd_vs_flow(module, config, params, data, lr=preset.lr, wd=preset.wd, steps=preset.steps,
                        record=record_steps(preset.steps, dense=100, per_decade=50), engine=backend.engine,
                        rtol=args.rtol, progress=not args.no_progress, label=f"{args.preset}: GD beside the flow")
    result.settings["preset"] = args.preset
    print(f"{args.preset}, {preset.steps} steps of GD at lr {preset.lr:g} on {backend.name}:\n{result.summary()}")
    if out is not None:
        with files.locked(out, "dichotomy gd-flow"):
            paths = [files.write_json(out / "gd_flow.json", result.to_json()), _plot(result, out / "gd_flow.png")]
        print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_OK


def _plot(result, path: Path) -> Path:
    from dichotomy.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    t = np.maximum(result.time, np.finfo(float).tiny)
    axes[0].loglog(t[1:], np.maximum(result.distance[1:], 1e-17))
    axes[0].set(xlabel="time t = lr x step", ylabel="||θ_GD − θ_flow|| / ||θ_flow||",
                title="GD's distance from the flow")
    for name, style in (("gd", "-"), ("flow", "--")):
        for metric in ("test_loss", "train_loss"):
            if metric in getattr(result, name):
                axes[1].loglog(t[1:], getattr(result, name)[metric][1:], style, label=f"{metric}, {name}")
    axes[1].set(xlabel="time t = lr x step", title="the two runs")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    files.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path
