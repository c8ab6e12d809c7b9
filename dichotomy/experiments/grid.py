"""A sweep's grid: axes of preset fields and their values, seeds, and the runs and tasks they expand into.

:func:`grid` checks a grid before anything runs (every error one line); :func:`plan` expands it into runs, each
keyed by everything that determines it; :func:`tasks` packs the runs that share a dataset and a step count into
batches. dichotomy/experiments/sweep.py runs the tasks and stores what they train.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.experiments import presets
from dichotomy.experiments import runs as claim_runs
from dichotomy.refimpl import checks, models
from dichotomy.refimpl import data as datasets
from dichotomy.store import manifest
from dichotomy.store.keys import fingerprint

BATCH = 16      # runs per task at most


@dataclass(frozen=True)
class Grid:
    """A preset, the values of each swept field, the seeds, and optionally a step count for every run."""

    preset: str
    axes: dict[str, list] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int | None = None

    def to_json(self) -> dict:
        return {"preset": self.preset, "axes": self.axes, "seeds": self.seeds, "steps": self.steps}


@dataclass(frozen=True)
class RunPlan:
    """One run of the grid: its coordinates (axis values and seed), its preset, and its key."""

    coords: dict
    seed: int
    preset: presets.Preset
    key: str


@dataclass(frozen=True)
class Task:
    """Runs that share a dataset and a step count: one batch of the backend's engine."""

    key: str
    runs: tuple[RunPlan, ...]
    backend: str
    dtype: str
    out: str
    checkpoint_every: float | None
    flow: dict | None = None  # Flow settings: the runs integrate the gradient flow instead of GD


# --- the grid ------------------------------------------------------------------------------------------------

def _defaults(preset: presets.Preset) -> dict:
    """Every name an axis may take, with the preset's value (or the generator's or Config's default)."""
    out = {k: getattr(preset, k) for k in presets.RUN_KEYS}
    generator = datasets.GENERATORS.get(preset.dataset)
    if generator is not None:
        for name, p in inspect.signature(generator).parameters.items():
            if p.default is not inspect.Parameter.empty:
                out[name] = p.default
    out.update(preset.data_args)
    for f in dataclasses.fields(models.get(preset.model).Config):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    out.update(preset.model_args)
    return out


def _parse(name: str, text, like):
    """``text`` (a string from the command line, or a TOML value) as a value of the type of ``like``."""
    kind = type(like)
    if isinstance(text, str) and kind is not str:
        text = text.strip()
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ConfigError(f"--grid {name}: {text!r} is not true or false")
            return text.lower() == "true"
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"--grid {name}: {text!r} is not a number") from None
        text = number
    if kind is bool or isinstance(text, bool):
        if not isinstance(text, bool) or kind is not bool:
            raise ConfigError(f"--grid {name}: {text!r} is not a {kind.__name__}")
        return text
    if kind is int:
        if not isinstance(text, int | float) or not float(text).is_integer():
            raise ConfigError(f"--grid {name}: {text!r} is not an integer")
        return int(text)
    if kind is float:
        if not isinstance(text, int | float) or not np.isfinite(text):
            raise ConfigError(f"--grid {name}: {text!r} is not a finite number")
        return float(text)
    if kind is str and isinstance(text, str):
        return text
    raise ConfigError(f"--grid {name}: {text!r} is not a {kind.__name__}")


def grid(preset: str, axes: dict[str, list], seeds=(0,), steps: int | None = None) -> Grid:
    """A checked :class:`Grid`: known preset, known axis names, values of the field's type, distinct values, seeds >= 0.

    Every error is one line, raised before anything runs. The paper's names for a field (``lambda`` for wd, ``eta``
    for lr, ``depth`` for L: :data:`presets.PAPER_NAMES`) name the same axis, stored under the field's name.
    """
    base = presets.get(preset)
    known = _defaults(base)
    named = {}
    for name, values in axes.items():
        field = presets.PAPER_NAMES.get(name, name)
        if field in named:
            raise ConfigError(f"--grid {name}: the axis {field} is given twice")
        named[field] = values
    axes = named
    checked = {}
    for name, values in axes.items():
        if name in ("seed", "init_seed"):
            raise ConfigError(f"--grid {name}: seeds are swept with --seeds A:B")
        if name not in known:
            names = ", ".join(sorted(set(known) - {"seed", "init_seed"}))
            raise ConfigError(f"--grid {name}: not a field of preset {preset} (choose from {names})")
        if known[name] is None:
            raise ConfigError(f"--grid {name}: preset {preset} has no value to infer its type from")
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(f"--grid {name}: give at least one value")
        parsed = [_parse(name, v, known[name]) for v in values]
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f"--grid {name}: a value is repeated")
        checked[name] = parsed
    seeds = [checks.positive_int("seed", s, minimum=0) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("--seeds: give distinct seeds >= 0, e.g. 0:4")
    if steps is not None:
        steps = checks.step_count("steps", steps, minimum=1)
        if "steps" in checked:
            raise ConfigError("--steps sets every run's length, and steps is also a --grid axis: give one of them")
    g = Grid(preset, checked, seeds, steps)
    for cell in _cells(g):  # every cell must make a valid preset (ConfigError otherwise)
        _preset(g, cell, seeds[0])
    return g


def parse_axis(text: str) -> tuple[str, list[str]]:
    """``NAME=V1,V2,...`` -> (NAME, [V1, V2, ...]) (values still strings)."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise ConfigError(f"--grid {text!r}: write NAME=V1,V2,... (e.g. alpha=64,128,256)")
    parts = values.split(",")
    if any(not v.strip() for v in parts):
        raise ConfigError(f"--grid {text!r}: a value is empty; write NAME=V1,V2,... with no empty value")
    return name.strip(), parts


def parse_seeds(text: str) -> list[int]:
    """``A:B`` -> [A, ..., B-1]; ``S`` -> [S]."""
    try:
        if ":" in text:
            a, b = (int(x) for x in text.split(":"))
            seeds = list(range(a, b))
        else:
            seeds = [int(text)]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: write A:B (seeds A to B-1) or one seed") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: give at least one seed, all >= 0")
    return seeds


def read_config(path: Path) -> dict:
    """Read a sweep TOML file into the keyword arguments of :func:`grid` plus any ``backend``.

    The file holds ``preset``, optional ``steps``, ``seeds`` ("A:B" or a list), ``backend``, and a ``[grid]`` table of
    lists.
    """
    try:
        doc = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot be read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: not valid TOML ({e})") from None
    unknown = set(doc) - {"preset", "steps", "seeds", "backend", "grid"}
    if unknown:
        raise ConfigError(f"--config {path}: unknown key {sorted(unknown)[0]!r} (preset, steps, seeds, backend, grid)")
    if "preset" not in doc:
        raise ConfigError(f"--config {path}: missing preset = \"NAME\"")
    seeds = doc.get("seeds", [0])
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else seeds
    axes = doc.get("grid", {})
    if not isinstance(axes, dict) or not all(isinstance(v, list) for v in axes.values()):
        raise ConfigError(f"--config {path}: [grid] holds NAME = [V1, V2, ...] lists")
    out = {"preset": doc["preset"], "axes": axes, "seeds": seeds, "steps": doc.get("steps")}
    if "backend" in doc:
        out["backend"] = doc["backend"]
    return out


def _cells(g: Grid):
    names = list(g.axes)
    for values in itertools.product(*(g.axes[n] for n in names)):
        yield dict(zip(names, values, strict=True))


def _preset(g: Grid, cell: dict, seed: int) -> presets.Preset:
    base = presets.get(g.preset)
    changes = {**cell, "seed": base.seed + seed, "init_seed": base.init_seed + seed}
    if g.steps is not None:
        changes["steps"] = g.steps
    return presets.override(base, **changes)


def plan(g: Grid, *, backend: str, dtype: str = "float64", flow: dict | None = None) -> list[RunPlan]:
    """Every run of the grid, axes outermost, seeds innermost (``flow``: through the gradient flow)."""
    version = manifest.package_version()
    out = []
    for cell in _cells(g):
        for seed in g.seeds:
            p = _preset(g, cell, seed)
            key = fingerprint(dataclasses.asdict(p), backend, dtype, claim_runs.schedule(p.steps), version,
                              *([{"flow": flow}] if flow else []))[:24]
            out.append(RunPlan(cell, seed, p, key))
    return out


def tasks(todo: list[RunPlan], *, backend: str, dtype: str, out: Path, batch: int = BATCH,
          checkpoint_every: float | None = None, flow: dict | None = None) -> list[Task]:
    """The runs grouped by dataset and step count, in chunks of at most ``batch``."""
    groups: dict[str, list[RunPlan]] = {}
    for r in todo:
        p = r.preset
        groups.setdefault(fingerprint(p.model, p.dataset, p.data_args, p.seed, p.steps), []).append(r)
    made = []
    for members in groups.values():
        for i in range(0, len(members), batch):
            chunk = tuple(members[i:i + batch])
            made.append(Task(fingerprint([r.key for r in chunk])[:24], chunk, backend, dtype, str(out),
                             checkpoint_every, flow))
    return made
