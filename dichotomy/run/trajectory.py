"""A training run's record: metrics on a schedule, final parameters, and the full config, saved without pickle.

On disk a trajectory is two files with one stem: ``STEM.npz`` (``steps``, ``metric/<name>``,
``param/<name>``, and ``outputs`` when a probe set was recorded) and ``STEM.json`` (config, seed, package
versions, backend, status). Both load back with :func:`load` and ``np.load(allow_pickle=False)``, so any
tool (or another framework) can read them.
"""

from __future__ import annotations

import json
import platform
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.store import files

FORMAT_VERSION = 1


def record_steps(steps: int, *, dense: int = 1000, per_decade: int = 200) -> np.ndarray:
    """Steps at which to record: every step up to ``dense``, then ``per_decade`` log-spaced points per decade.

    Always includes 0 and ``steps``. A 1e7-step run keeps about 1000 + 4 * 200 points.
    """
    head = np.arange(min(dense, steps) + 1)
    if steps <= dense:
        return head
    decades = np.log10(steps) - np.log10(max(dense, 1))
    tail = np.logspace(np.log10(max(dense, 1)), np.log10(steps), int(np.ceil(decades * per_decade)) + 1)
    return np.unique(np.concatenate([head, np.round(tail).astype(np.int64), [steps]]))


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for pkg in ("dichotomy-grokking", "numpy", "scipy", "numba", "cupy", "torch", "jax"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class Trajectory:
    """Recorded metrics (each shape (m,), aligned with ``steps``), final params and the run's config.

    ``status`` is ``"completed"``, ``"diverged"`` or ``"interrupted"``; the last two keep what was recorded.
    ``outputs`` (m, n_probe) or (m, n_probe, out), when recorded, holds f(theta_s; x) on the run's probe
    inputs at every recorded step (what :mod:`dichotomy.diagnosis` compares with the two limits).
    """

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    config: dict
    status: str = "completed"
    meta: dict = field(default_factory=lambda: {"versions": versions()})
    outputs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def from_rows(cls, record: np.ndarray, rows: list[dict], params: dict, config: dict, status: str, *,
                  lr: float | None = None, outputs: list | None = None) -> Trajectory:
        """The trajectory of a run that recorded ``rows`` at the first ``len(rows)`` steps of ``record``.

        Each row is one dict of metrics; ``time`` = lr * step is added when ``lr`` is given. Every training driver
        builds its result (and what it keeps on divergence or Ctrl-C) this way.
        """
        steps = np.asarray(record)[: len(rows)]
        metrics = {k: np.array([r[k] for r in rows]) for k in (rows[0] if rows else {})}
        if lr is not None:
            metrics["time"] = lr * steps.astype(np.float64)
        return cls(steps, metrics, params, config, status,
                   outputs=None if outputs is None else np.array(outputs[: len(rows)]))

    def save(self, stem: str | Path) -> tuple[Path, Path]:
        """Write ``STEM.npz`` and ``STEM.json``, each atomically (:mod:`dichotomy.store.files`); return their paths.

        The sidecar is serialized first, so a config that is not JSON leaves neither file behind.
        """
        stem = Path(stem)
        if not stem.name or stem.name in (".", ".."):
            raise ConfigError(f"save needs a file stem such as runs/a/trajectory, got {str(stem)!r}")
        arrays = {"steps": self.steps}
        arrays.update({f"metric/{k}": v for k, v in self.metrics.items()})
        arrays.update({f"param/{k}": v for k, v in self.params.items()})
        if self.outputs is not None:
            arrays["outputs"] = self.outputs
        npz, sidecar = stem.with_suffix(".npz"), stem.with_suffix(".json")
        doc = {"format_version": FORMAT_VERSION, "status": self.status, "config": self.config,
               "meta": self.meta, "metrics": list(self.metrics), "params": list(self.params)}
        text = sidecar_text("the trajectory's config", doc)
        files.save_npz(npz, arrays)
        files.write_text(sidecar, text)
        return npz, sidecar


def sidecar_text(name: str, doc) -> str:
    """``doc`` as the sidecar's JSON text, in the convention of :func:`dichotomy.store.files.json_ready`.

    That is NaN as null, NumPy as lists; anything else that JSON cannot hold (an object, a set) is a one-line
    ConfigError naming ``name``.
    """
    try:
        return json.dumps(files.json_ready(doc), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} must hold only JSON values (numbers, strings, lists, dicts): {e}") from None


def load(stem: str | Path) -> Trajectory:
    """Read a trajectory written by :meth:`Trajectory.save` (pass the stem, or either file's path)."""
    stem = Path(stem)
    if stem.suffix in (".npz", ".json"):
        stem = stem.with_suffix("")
    npz, sidecar = stem.with_suffix(".npz"), stem.with_suffix(".json")
    for path in (npz, sidecar):
        if not path.exists():
            raise ConfigError(f"no trajectory at {path}: expected {npz.name} and {sidecar.name}")
    doc = files.read_json(sidecar)
    if doc is None:
        raise ConfigError(f"{sidecar} is not a readable JSON trajectory sidecar (truncated or damaged?)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{sidecar} has format version {doc.get('format_version')}, expected {FORMAT_VERSION}")
    try:
        with np.load(npz, allow_pickle=False) as z:
            return Trajectory(steps=z["steps"], metrics={k: z[f"metric/{k}"] for k in doc["metrics"]},
                              params={k: z[f"param/{k}"] for k in doc["params"]}, config=doc["config"],
                              status=doc["status"], meta=doc["meta"],
                              outputs=z["outputs"] if "outputs" in z.files else None)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{npz} is not a readable trajectory ({type(e).__name__}: {e}); it may be truncated or "
                          "damaged") from None
