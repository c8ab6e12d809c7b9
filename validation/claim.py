"""What every claim module returns: :class:`Results` (saved without pickle) and :class:`Check` verdicts.

A claim module (``validation/fig1a.py`` ...) holds one prediction of the paper and three functions:

- ``compute(config, backend, progress) -> Results``: the runs and the closed-form limits;
- ``plot(results, out) -> list[Path]``: its figures;
- ``check(results, config) -> list[Check]``: each prediction, its measurement and its tolerance.

and ``TITLE``, ``CLAIM`` (the statement, with its source in the paper) and ``CONFIGS`` (``quick``, ``paper``
and ``test`` scales; tolerances live in the config so that they are fixed before a run and hashed with it).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dichotomy.errors import ConfigError
from dichotomy.run.trajectory import Trajectory, load
from dichotomy.store import files
from dichotomy.store.keys import fingerprint


def _measured(x) -> float:
    """A measurement as a float; None (a NaN or infinity saved to JSON and loaded back) is NaN, which fails."""
    return math.nan if x is None else float(x)


@dataclass(frozen=True)
class Check:
    """One prediction against its measurement.

    ``predicted`` is the theory's (or the figure's) value, or None for a pure bound; ``tolerance`` says in
    words what passes (written down with the config, before the run; justified in docs/validation.md).
    """

    name: str
    prediction: str
    predicted: float | None
    measured: float
    tolerance: str
    passed: bool

    @classmethod
    def close(cls, name: str, prediction: str, predicted: float, measured: float, *, atol: float = 0.0,
              rtol: float = 0.0) -> Check:
        """Passes when |measured - predicted| <= atol + rtol |predicted|."""
        parts = [f"±{atol:g}" if atol else "", f"±{100 * rtol:g}%" if rtol else ""]
        measured = _measured(measured)
        ok = math.isfinite(measured) and abs(measured - predicted) <= atol + rtol * abs(predicted)
        return cls(name, prediction, float(predicted), measured, " ".join(p for p in parts if p), ok)

    @classmethod
    def bound(cls, name: str, prediction: str, measured: float, *, low: float | None = None,
              high: float | None = None) -> Check:
        """Passes when low <= measured <= high (either side may be open)."""
        text = " and ".join(s for s in (f">= {low:g}" if low is not None else "",
                                        f"<= {high:g}" if high is not None else "") if s)
        measured = _measured(measured)
        ok = (math.isfinite(measured) and (low is None or measured >= low)
              and (high is None or measured <= high))
        return cls(name, prediction, None, measured, text, ok)

    @classmethod
    def holds(cls, name: str, prediction: str, measured: float, condition: bool, tolerance: str) -> Check:
        """A check whose pass condition is computed by the caller (an ordering, a sign).

        It never passes on a NaN or infinite measurement.
        """
        measured = _measured(measured)
        return cls(name, prediction, None, measured, tolerance, bool(condition) and math.isfinite(measured))


@dataclass
class Results:
    """A claim's measurements: JSON ``values``, named ``arrays`` and the raw ``trajectories``."""

    values: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    trajectories: dict[str, Trajectory] = field(default_factory=dict)

    def save(self, folder: Path, config: dict) -> list[Path]:
        """Write ``results.json``, ``results.npz`` and ``trajectories/``, each file atomically; return their paths.

        ``results.json`` holds the config, its hash and the values. The caller began the set first and seals it after
        (:class:`dichotomy.store.resultset.ResultSet`).
        """
        paths = []
        for name, traj in self.trajectories.items():
            paths += traj.save(folder / "trajectories" / name)
        paths.append(files.save_npz(folder / "results.npz", self.arrays))
        doc = {"config": config, "config_hash": config_hash(config), "values": files.json_ready(self.values),
               "arrays": sorted(self.arrays), "trajectories": sorted(self.trajectories)}
        paths.append(files.write_json(folder / "results.json", doc))
        return paths

    @classmethod
    def load(cls, folder: Path) -> Results:
        """The results saved in ``folder``; a ConfigError naming the file if one is unreadable."""
        path = folder / "results.json"
        doc = files.read_json(path)
        if doc is None or not isinstance(doc.get("arrays"), list) or not isinstance(doc.get("trajectories"), list):
            raise ConfigError(f"{path} is not a readable results file")
        try:
            with np.load(folder / "results.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in doc["arrays"]}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ConfigError(f"{folder / 'results.npz'} is not readable ({type(e).__name__})") from None
        trajectories = {k: load(folder / "trajectories" / k) for k in doc["trajectories"]}
        return cls(doc.get("values", {}), arrays, trajectories)


def config_hash(config: dict) -> str:
    """A short key of a JSON config (:func:`dichotomy.store.keys.fingerprint`): what decides reuse."""
    return fingerprint(config)[:16]


def check_to_json(check: Check) -> dict:
    return files.json_ready(asdict(check))

