"""Phase diagrams: when each cell of a sweep switched, against t* = ln α / (ηλ), and which way (docs/sweeps.md).

:func:`analyze` reads a sweep store (``DIR/sweep.nc``, written by ``dichotomy sweep``) and, for every run, finds
the switch of the test metric (:func:`dichotomy.diagnosis.measured_switch`: the step at which it has gone
half-way from its plateau after the training set is fit to its final value) and its direction:

- **grokking**: the test metric got better (accuracy up, loss down): the late predictor generalizes better;
- **misgrokking**: it got worse: the kernel predictor was the better one;
- **no switch**: it moved by less than ``min_change`` within the run (the switch is later, or absent).

Per cell (the runs that differ only in seed): the mean switch step over the seeds that switched, with an
uncertainty sqrt(sem² + grid²), where sem is the seeds' standard error and grid the mean half-width of the
recorded interval that holds each run's crossing (the crossing lies in that interval; where in it depends on
the interpolation); with one switched seed sem is unknown (NaN, null in phase.json, not 0) and the
uncertainty is grid alone. The cell's class is the seeds' majority ("mixed" on a tie).

The fits (scipy.stats.linregress on every switched run, 95% intervals from Student's t):

- ``measured_vs_predicted``: switch step against t* = ln α / (ηλ) in steps: slope 1, intercept 0 predicted;
- ``ln_alpha``: ηλ · step against ln α (slope 1), and per group of runs sharing η, λ and the axes that do not
  change α, step against ln α (slope 1/(ηλ));
- ``inv_wd``: η · step / ln α against 1/λ (slope 1), and per group sharing α, η and the other axes, η · step
  against 1/λ (slope ln α).

:func:`write` saves ``DIR/phase.json`` and ``DIR/phase.png``: the classes over (α, λ) with the predicted boundary
λ = ln α / (ηT) (T the run's length: below the curve t* > T, no switch is expected), one diagram per setting of
the sweep's other axes, and measured against predicted switch time with the fit.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dichotomy import diagnosis
from dichotomy.errors import ConfigError
from dichotomy.experiments import sweep
from dichotomy.regime import EDGE
from dichotomy.store import files

JSON_FILE, FIGURE_FILE = "phase.json", "phase.png"
CLASSES = ("grokking", "misgrokking", "no switch")
SWITCHES = CLASSES[:2]  # the classes of a run that switched
MIN_CHANGE = 0.1  # the least move of the test metric that counts as a switch (measured_switch's)
LEVEL = 0.95      # of the fits' confidence intervals
MAX_DIAGRAMS = 8  # (α, λ) panels in phase.png, one per setting of the other axes; phase.json holds every cell


@dataclass(frozen=True)
class _Series:
    """One run's recorded metrics, as :func:`diagnosis.measured_switch` reads them."""

    steps: np.ndarray
    metrics: dict


def load(folder: Path):
    """The sweep store ``folder/sweep.nc`` as an in-memory xarray Dataset; a one-line error if there is none."""
    import xarray as xr

    path = Path(folder) / sweep.STORE_FILE
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: write the store with dichotomy sweep PRESET ... --out {folder}")
    try:
        with xr.open_dataset(path, engine="scipy") as ds:
            ds = ds.load()
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"{path} is not a sweep store ({e})") from None
    missing = [v for v in ("status", *(f"run_{n}" for n in sweep.PER_RUN if n != "lr_sharpness")) if v not in ds]
    if not missing and "seed" in ds.dims and "step" not in ds.dims:  # sweep.write_store: nothing was recorded
        counts = ", ".join(f"{n} {s}" for s, n in Counter(ds["status"].values.ravel().tolist()).items())
        raise ConfigError(f"{path}: no run of the sweep recorded anything ({counts}): nothing to analyze; the sweep "
                          "printed each failed run's reason")
    if missing or "seed" not in ds.dims or "step" not in ds.dims:
        raise ConfigError(f"{path} is not a sweep store written by this version (no {', '.join(missing) or 'dims'}): "
                          "rerun the dichotomy sweep command that wrote it")
    return ds


def run_switch(steps: np.ndarray, metrics: dict[str, np.ndarray], metric: str,
               min_change: float = MIN_CHANGE) -> dict:
    """One run's switch of ``metric``, as a dict.

    Its keys are ``class``, ``step`` (its 50% point, NaN without a switch), ``grid`` (half the recorded interval holding
    it), ``width`` (10-90%), ``step_90`` (its 90% point: the end of the switch), ``plateau`` and ``final``.
    """
    series = _Series(np.asarray(steps), {k: np.asarray(v, np.float64) for k, v in metrics.items()})
    t = diagnosis.measured_switch(series, metric, min_change=min_change)
    if t is None:
        return {"class": "no switch", "step": math.nan, "grid": math.nan, "width": math.nan, "step_90": math.nan,
                "plateau": math.nan, "final": float(series.metrics[metric][-1])}
    better = t.final > t.plateau if t.metric.endswith("acc") else t.final < t.plateau
    k = int(np.clip(np.searchsorted(series.steps, t.step_50), 1, len(series.steps) - 1))
    grid = 0.5 * float(series.steps[k] - series.steps[k - 1])
    return {"class": "grokking" if better else "misgrokking", "step": t.step_50, "grid": grid, "width": t.width,
            "step_90": t.step_90, "plateau": t.plateau, "final": t.final}


def fit(x, y, predicted_slope: float | None = None, x_name: str = "", y_name: str = "") -> dict:
    """Least-squares line through the finite points with its 95% intervals.

    The intervals are None where there are fewer than 3 points (no degrees of freedom left for an interval); the slope
    is None with fewer than 2 distinct x.
    """
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"x": x_name, "y": y_name, "n": int(x.size), "predicted_slope": predicted_slope, "slope": None,
           "slope_ci": None, "intercept": None, "intercept_ci": None, "r2": None}
    if x.size < 2 or np.ptp(x) == 0:
        return out
    r = stats.linregress(x, y)
    out.update(slope=float(r.slope), intercept=float(r.intercept),
               r2=float(r.rvalue**2) if np.ptp(y) > 0 else None)
    if x.size >= 3:
        q = float(stats.t.ppf(0.5 + LEVEL / 2, x.size - 2))
        out["slope_ci"] = [float(r.slope - q * r.stderr), float(r.slope + q * r.stderr)]
        out["intercept_ci"] = [float(r.intercept - q * r.intercept_stderr), float(r.intercept + q * r.intercept_stderr)]
    return out


def _axes(ds) -> list[str]:
    return [d for d in ds["status"].dims if d != "seed"]


def _cells(ds):
    axes = _axes(ds)
    for values in itertools.product(*(ds[a].values.tolist() for a in axes)):
        yield dict(zip(axes, values, strict=True))


def analyze(ds, metric: str | None = None, min_change: float = MIN_CHANGE) -> dict:
    """Every run's and every cell's switch, and the fits (the module's docstring); JSON-ready (NaN -> None)."""
    metrics = [v for v in ds.data_vars if ds[v].dims[-1:] == ("step",)]
    metric = metric or ("test_acc" if "test_acc" in metrics else "test_loss")
    if metric not in metrics:
        raise ConfigError(f"the store has no metric {metric!r}; it has {', '.join(metrics) or 'none'}")
    steps, axes = ds["step"].values, _axes(ds)
    runs, cells = [], []
    for coords in _cells(ds):
        at = ds.sel(coords)
        per_seed = []
        for seed in ds["seed"].values.tolist():
            run = at.sel(seed=seed)
            entry = {"seed": seed, "status": str(run["status"].values)}
            entry.update({n: float(run[f"run_{n}"]) if f"run_{n}" in run else math.nan for n in sweep.PER_RUN})
            if entry["status"] != "completed":
                entry.update({"class": None, "step": math.nan})
            else:
                values = {m: run[m].values for m in metrics}
                keep = np.isfinite(values[metric])
                entry.update(run_switch(steps[keep], {m: v[keep] for m, v in values.items()}, metric, min_change))
            per_seed.append(entry)
            runs.append({"coords": coords, **entry})
        cells.append(_cell(coords, per_seed))
    # the axes along which the init scale changes (alpha, or a field alpha depends on): the ln-alpha fits vary them
    alpha = ds["run_alpha"]
    alpha_axes = [a for a in axes if bool((alpha.max(a) > alpha.min(a)).any())]
    return files.json_ready({
        "store": ds.attrs.get("preset"), "metric": metric, "min_change": min_change, "axes": axes,
        "alpha_axes": alpha_axes, "seeds": ds["seed"].values.tolist(), "steps": int(steps.max()) if steps.size else 0,
        "cells": cells, "fits": _fits(runs, axes, alpha_axes)})


def _cell(coords: dict, per_seed: list[dict]) -> dict:
    done = [e for e in per_seed if e["class"] is not None]
    counts = Counter(e["class"] for e in done)
    ranked = counts.most_common()
    if not ranked:
        kind = "no run"
    elif len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        kind = "mixed"
    else:
        kind = ranked[0][0]
    moved = [e for e in done if e["class"] in SWITCHES]
    switched = np.array([e["step"] for e in moved])
    grids = np.array([e["grid"] for e in moved])
    step = float(switched.mean()) if switched.size else math.nan
    sem = float(switched.std(ddof=1) / math.sqrt(switched.size)) if switched.size >= 2 else math.nan  # 1 seed: unknown
    grid = float(grids.mean()) if grids.size else math.nan
    first = done[0] if done else per_seed[0]  # alpha, lr, wd and t* do not depend on the seed; a missing run has NaN
    t_star = first["t_star"]
    return {"coords": coords, "alpha": first["alpha"], "lr": first["lr"], "wd": first["wd"], "t_star": t_star,
            "class": kind, "classes": dict(counts), "seeds_switched": int(switched.size), "switch_step": step,
            "uncertainty": {"total": (math.hypot(sem, grid) if switched.size >= 2 else grid) if switched.size
                            else math.nan, "seeds": sem, "record_grid": grid},
            "width": float(np.mean([e["width"] for e in moved])) if moved else math.nan,
            "ratio": step / t_star if switched.size and t_star > 0 else math.nan, "runs": per_seed,
            "lr_sharpness": max((e["lr_sharpness"] for e in per_seed if math.isfinite(e["lr_sharpness"])),
                                default=math.nan)}


def _fits(runs: list[dict], axes: list[str], alpha_axes: list[str]) -> dict:
    ok = [r for r in runs if r["class"] in SWITCHES and r["alpha"] > 1 and r["wd"] > 0]
    fixed = [a for a in axes if a not in alpha_axes and a not in ("wd", "lr")]

    def groups(names, x, y, slope, x_name, y_name):
        by: dict[tuple, list[dict]] = {}
        for r in ok:
            by.setdefault(tuple(r["coords"][n] if n in r["coords"] else r[n] for n in names), []).append(r)
        out = []
        for key, members in by.items():
            xs = [x(r) for r in members]
            if len(set(xs)) >= 2:
                out.append({"fixed": dict(zip(names, key, strict=True)),
                            **fit(xs, [y(r) for r in members], slope(members[0]), x_name, y_name)})
        return out

    ln_a = [math.log(r["alpha"]) for r in ok]
    return {
        "measured_vs_predicted": fit([r["t_star"] for r in ok], [r["step"] for r in ok], 1.0,
                                     "t* = ln α / (ηλ) (steps)", "switch step"),
        "ln_alpha": {
            "pooled": fit(ln_a, [r["lr"] * r["wd"] * r["step"] for r in ok], 1.0, "ln α", "ηλ · switch step"),
            "groups": groups([*fixed, "lr", "wd"], lambda r: math.log(r["alpha"]), lambda r: r["step"],
                             lambda r: 1.0 / (r["lr"] * r["wd"]), "ln α", "switch step"),
        },
        "inv_wd": {
            "pooled": fit([1.0 / r["wd"] for r in ok], [r["lr"] * r["step"] / a for r, a in zip(ok, ln_a, strict=True)],
                          1.0, "1/λ", "η · switch step / ln α"),
            "groups": groups([*fixed, "lr", "alpha"], lambda r: 1.0 / r["wd"], lambda r: r["lr"] * r["step"],
                             lambda r: math.log(r["alpha"]), "1/λ", "η · switch step"),
        },
    }


# --- the files ------------------------------------------------------------------------------------------------

COLORS = {"grokking": "tab:green", "misgrokking": "tab:red", "no switch": "tab:gray", "mixed": "tab:orange",
          "no run": "white"}


def write(folder: Path, metric: str | None = None, min_change: float = MIN_CHANGE, *,
          store=None) -> tuple[dict, list[Path]]:
    """Analyze the store in ``folder`` and write ``phase.json`` and ``phase.png`` there.

    ``store`` is that store, already loaded. Returns (analysis, paths).
    """
    folder = Path(folder)
    result = analyze(load(folder) if store is None else store, metric, min_change)
    result["figure"] = FIGURE_FILE
    paths = [files.write_json(folder / JSON_FILE, result, indent=2), figure(result, folder / FIGURE_FILE)]
    return result, paths


def summary(result: dict) -> str:
    """The cells and the fits, a few lines for the terminal."""
    def num(x, fmt=".4g"):
        return "-" if x is None else format(x, fmt)

    axes = [a for a in result["axes"] if len({c["coords"][a] for c in result["cells"]}) > 1]
    lines = ["  ".join(f"{a:>10s}" for a in axes) + f"  {'class':>11s}  {'switch':>10s}  {'±':>8s}  {'t*':>10s}  ratio"]
    for c in result["cells"]:
        lines.append("  ".join(f"{num(c['coords'][a]):>10s}" for a in axes)
                     + f"  {c['class']:>11s}  {num(c['switch_step']):>10s}  {num(c['uncertainty']['total'], '.2g'):>8s}"
                     f"  {num(c['t_star']):>10s}  {num(c['ratio'], '.3f')}")
    fits = result["fits"]
    for name, f in (("measured vs t*", fits["measured_vs_predicted"]), ("vs ln α (pooled)", fits["ln_alpha"]["pooled"]),
                    ("vs 1/λ (pooled)", fits["inv_wd"]["pooled"])):
        if f["slope"] is None:
            lines.append(f"fit {name}: too few switched runs ({f['n']})")
            continue
        ci = (f"95% [{f['slope_ci'][0]:.3g}, {f['slope_ci'][1]:.3g}]" if f["slope_ci"] is not None
              else "no interval (< 3 runs)")
        lines.append(f"fit {name}: {f['y']} = {f['slope']:.3g} x + {f['intercept']:.3g}, x = {f['x']}; slope {ci}, "
                     f"predicted {f['predicted_slope']:g}; R² {num(f['r2'], '.3f')}; {f['n']} runs")
    edge = [c for c in result["cells"] if c.get("lr_sharpness") is not None and c["lr_sharpness"] >= EDGE]
    if edge:
        where = ", ".join(" ".join(f"{a}={num(c['coords'][a])}" for a in axes) or "the cell" for c in edge)
        lines.append(f"warning: lr x sharpness >= {EDGE:g} in {len(edge)} cell(s) ({where}): GD is outside the "
                     "gradient-flow regime there, and the theory's switch time may not apply (sweep --flow follows "
                     "the flow)")
    return "\n".join(lines)


def figure(result: dict, path: Path) -> Path:
    """The phase diagrams over (α, λ) and measured against predicted switch time, as one PNG.

    There is one diagram panel per value of the sweep's other axes (at most :data:`MAX_DIAGRAMS`).
    """
    from dichotomy.plots import pyplot

    plt = pyplot()


    panels = facets(result)
    shown = panels[:MAX_DIAGRAMS]
    ncols = min(len(shown) + 1, 3)
    nrows = math.ceil((len(shown) + 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.25 * ncols, 4.8 * nrows), squeeze=False)
    axes = axes.ravel()
    for ax, (cells, at) in zip(axes, shown, strict=False):
        _diagram(ax, result, cells, at)
    _measured(axes[len(shown)], result)
    for ax in axes[len(shown) + 1:]:
        ax.set_visible(False)
    more = f" (diagrams of the first {len(shown)} of {len(panels)} settings; all in {JSON_FILE})" \
        if len(panels) > len(shown) else ""
    fig.suptitle(f"{result.get('store') or 'sweep'}: switch of {result['metric']} against t* = ln α / (ηλ){more}")
    fig.tight_layout()
    written = files.atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return written


def facets(result: dict) -> list[tuple[list[dict], str]]:
    """The cells of each (α, λ) diagram, with its label.

    There is one diagram per combination of the values of the axes other than α's and λ's that take more than one value,
    in the store's order (the label is "" when there are none).
    """
    others = [a for a in result["axes"] if a not in result["alpha_axes"] and a != "wd"]
    many = [a for a in others if len({c["coords"][a] for c in result["cells"]}) > 1]
    groups: dict[tuple, list[dict]] = {}
    for c in result["cells"]:
        groups.setdefault(tuple(c["coords"][a] for a in many), []).append(c)
    return [(cells, ", ".join(f"{a} = {v}" for a, v in zip(many, key, strict=True))) for key, cells in groups.items()]


def _diagram(ax, result: dict, cells: list[dict], at: str) -> None:
    for kind, color in COLORS.items():
        mine = [c for c in cells if c["class"] == kind and c["alpha"] and c["wd"]]
        if mine:
            ax.scatter([c["alpha"] for c in mine], [c["wd"] for c in mine], s=260, marker="s", c=color,
                       edgecolors="k", linewidths=0.6, label=kind)
    for c in cells:
        if c["ratio"] is not None and c["alpha"] and c["wd"]:
            ax.annotate(f"{c['ratio']:.2f}", (c["alpha"], c["wd"]), xytext=(0, 12), textcoords="offset points",
                        ha="center", fontsize=7, zorder=5,  # above the boundary line, on a white patch
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    alphas = np.array([c["alpha"] for c in cells if c["alpha"] and c["alpha"] > 1])
    lr = cells[0]["lr"] if cells else None
    if alphas.size and lr and result["steps"] > 0:
        grid = np.geomspace(alphas.min() / 1.5, alphas.max() * 1.5, 200)
        grid = grid[grid > 1]
        ax.plot(grid, np.log(grid) / (lr * result["steps"]), "k--", lw=1, zorder=1,
                label=f"t* = T: λ = ln α / (ηT), T = {result['steps']:,}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.1, y=0.15)  # room for the labels above the top row
    ax.set_xlabel("α (init scale)")
    ax.set_ylabel("λ (weight decay)")
    _finish(ax, "class per cell (label: measured / predicted switch)" + (f"\nat {at}" if at else ""))


def _measured(ax, result: dict) -> None:
    cells = [c for c in result["cells"] if c["switch_step"] is not None and c["t_star"]]
    for kind in ("grokking", "misgrokking", "mixed"):
        mine = [c for c in cells if c["class"] == kind]
        if mine:
            ax.errorbar([c["t_star"] for c in mine], [c["switch_step"] for c in mine],
                        yerr=[c["uncertainty"]["total"] or 0 for c in mine], fmt="o", capsize=3, color=COLORS[kind],
                        label=f"{kind} (mean over seeds ± uncertainty)")
    f = result["fits"]["measured_vs_predicted"]
    if cells:
        x = np.geomspace(min(c["t_star"] for c in cells) / 1.3, max(c["t_star"] for c in cells) * 1.3, 100)
        ax.plot(x, x, "k:", lw=1, label="measured = predicted")
        if f["slope"] is not None:
            ci = f"[{f['slope_ci'][0]:.3g}, {f['slope_ci'][1]:.3g}]" if f["slope_ci"] else "(no interval: < 3 runs)"
            ax.plot(x, f["slope"] * x + f["intercept"], "k-", lw=1,
                    label=f"fit: slope {f['slope']:.3g} {ci}, R² {f['r2'] or math.nan:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no cell switched within its run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("predicted t* = ln α / (ηλ) (steps)")
    ax.set_ylabel("measured switch (50% point, steps)")
    _finish(ax, "measured against predicted switch time")


def _finish(ax, title: str) -> None:
    """A panel's title, grid and legend (none when nothing labelled was drawn: no empty legend, no warning)."""
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
