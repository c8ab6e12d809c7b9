"""Checkpoints of training runs: resume a killed run and end bit for bit where the uninterrupted run ends.

The driver (:func:`dichotomy.run.driver.drive`) saves its engine's ``state()``, the step, the metrics and
probe outputs recorded so far, and the index of the next record step, every ``every`` seconds, on SIGINT or
SIGTERM, and once at the end. A checkpoint is two kinds of file in one folder:

- ``STEM-<step>-<unique>.npz``: the arrays (``engine/...``, ``rows/<b>/<metric>``, ``outputs/<b>``, ``driver/...``);
- ``STEM.json``, the sidecar and commit point: schema and package version, the run's **key** (a sha256 of
  everything that determines the run: model, configs, initial params, data, lr, wd, steps, record schedule,
  probe, dtype, schedule, backend), and the newest two npz files with their size and sha256.

Each npz is written and fsynced before the sidecar that names it, and the sidecar is replaced atomically, so
a kill at any moment leaves a sidecar naming complete files; a damaged newest file falls back to the one before
it. ``STEM`` is ``checkpoint`` in an exclusive folder (one run per folder: ``dichotomy train --out``), where a
checkpoint of another run is refused rather than mixed in, and the key itself in a shared one (the runs of a
claim). Nothing is unpickled: npz files load with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import checks
from dichotomy.store import files, manifest

__all__ = ["DEFAULT_EVERY", "Checkpoints", "Slot"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_EVERY = 60.0  # seconds between checkpoints, unless one write costs more than OVERHEAD of that
OVERHEAD = 0.01       # with the default interval, checkpoints take at most this fraction of the run's time
KEEP = 2              # checkpoint files kept per run: the newest and the one before (if the newest is damaged)


@dataclass(frozen=True)
class Checkpoints:
    """Where and how often runs checkpoint.

    Parameters
    ----------
    folder : Path
        Where the checkpoint files go (created when the first one is written).
    every : float or None
        Seconds between checkpoints; None is the default policy: :data:`DEFAULT_EVERY` seconds, stretched so
        that writing costs under 1% of the run. 0 turns periodic checkpoints off (SIGINT/SIGTERM and the end
        of a run still write one).
    exclusive : bool
        One run per folder: a checkpoint there of any other run is refused with a :class:`ConfigError`.
    restart : bool
        Discard what is there and start from step 0.
    """

    folder: Path
    every: float | None = None
    exclusive: bool = False
    restart: bool = False

    def __post_init__(self):
        if self.every is not None:
            checks.positive("checkpoint interval (seconds)", self.every, allow_zero=True)
        object.__setattr__(self, "folder", Path(self.folder))

    def slot(self, key: str, what) -> Slot:
        """The checkpoint of the run whose fingerprint is ``key``; ``what`` (JSON) describes it in messages."""
        stem = "checkpoint" if self.exclusive else key[:32]
        slot = Slot(self, stem, key, what)
        if self.restart:
            slot.clear()
        elif self.exclusive:
            slot.check_same_run()
        return slot

    def clear(self) -> None:
        """Remove every checkpoint file of the folder (after the results they protect are safely written)."""
        if not self.folder.is_dir():
            return
        for p in self.folder.iterdir():
            if p.suffix in (".npz", ".json") or p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass


def _diff(old, new, prefix="") -> str | None:
    """The first difference between two JSON values, as 'path: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            d = _diff(old.get(k), new.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            d = _diff(a, b, f"{prefix}{i}.")
            if d:
                return d
        return None
    return None if old == new else f"{prefix.rstrip('.') or 'value'}: {old!r} -> {new!r}"


class Slot:
    """One run's (or one batch's) checkpoint: :meth:`load`, :meth:`due`, :meth:`save`, :meth:`clear`."""

    def __init__(self, owner: Checkpoints, stem: str, key: str, what):
        self.owner, self.key = owner, key
        self.what = json.loads(json.dumps(what, default=repr))  # as it reads back from the sidecar
        self.sidecar = owner.folder / f"{stem}.json"
        self.stem = stem
        self.every = DEFAULT_EVERY if owner.every is None else owner.every
        self.next_due = time.monotonic() + self.every

    def _doc(self) -> dict | None:
        return files.read_json(self.sidecar)

    def check_same_run(self) -> None:
        doc = self._doc()
        if doc is not None and doc.get("key") != self.key:
            change = _diff(doc.get("what"), self.what) or "the initial parameters or data"
            raise errors.ConfigError(
                f"{self.owner.folder} holds a checkpoint of another run ({change}); rerun with --restart to "
                "discard it, or choose another --out")

    def load(self) -> dict[str, np.ndarray] | None:
        """The newest intact checkpoint's arrays, or None (nothing saved, or nothing intact: a warning says so)."""
        doc = self._doc()
        if doc is None:
            if self.sidecar.exists():
                log.warning("checkpoint %s is unreadable; starting from step 0", self.sidecar)
            return None
        if doc.get("schema_version") != SCHEMA_VERSION or doc.get("key") != self.key:
            log.warning("checkpoint %s is of another run or format; starting from step 0", self.sidecar)
            return None
        for entry in doc.get("files", []):
            path = self.owner.folder / str(entry.get("file"))
            why = self._damage(path, entry)
            if why is None:
                try:
                    with np.load(path, allow_pickle=False) as z:
                        return {k: z[k] for k in z.files}
                except (OSError, ValueError, KeyError, EOFError) as e:
                    why = f"unreadable ({type(e).__name__})"
            log.warning("checkpoint %s (step %s) is %s; trying an older one", path, entry.get("step"), why)
        log.warning("no intact checkpoint in %s; starting from step 0", self.owner.folder)
        return None

    @staticmethod
    def _damage(path: Path, entry: dict) -> str | None:
        if not path.is_file():
            return "missing"
        if path.stat().st_size != entry.get("bytes"):
            return "truncated or edited (its size differs from the sidecar's)"
        if files.sha256(path) != entry.get("sha256"):
            return "damaged (its sha256 differs from the sidecar's)"
        return None

    def due(self) -> bool:
        """Whether the periodic checkpoint is due (never, with ``every`` = 0)."""
        return self.every > 0 and time.monotonic() >= self.next_due

    def save(self, step: int, arrays: dict[str, np.ndarray]) -> Path:
        """Write the checkpoint of ``step``: the npz, then the sidecar naming it (atomic), then drop old files."""
        start = time.monotonic()
        name = f"{self.stem}-{step:012d}-{time.time_ns():x}.npz"  # never the name of a file the sidecar lists
        path = files.save_npz(self.owner.folder / name, arrays)
        doc = self._doc() or {}
        previous = [e for e in doc.get("files", []) if doc.get("key") == self.key and e.get("file") != name]
        entry = {"file": name, "step": int(step), "bytes": path.stat().st_size, "sha256": files.sha256(path)}
        kept = [entry, *previous[: KEEP - 1]]
        files.write_json(self.sidecar, {"schema_version": SCHEMA_VERSION, "package_version": manifest.package_version(),
                                        "key": self.key, "what": self.what, "step": int(step), "files": kept})
        names = {e["file"] for e in kept}
        for p in self.owner.folder.glob(f"{self.stem}-*.npz"):
            if p.name not in names:
                p.unlink(missing_ok=True)
        cost = time.monotonic() - start
        stretch = cost / OVERHEAD if self.owner.every is None else 0.0
        self.next_due = time.monotonic() + max(self.every, stretch)
        return path

    def clear(self) -> None:
        """Remove this run's checkpoint files."""
        self.sidecar.unlink(missing_ok=True)
        for p in self.owner.folder.glob(f"{self.stem}-*.npz"):
            p.unlink(missing_ok=True)

