"""One lifecycle for every set of results the package keeps: reuse what verifies, else recompute and seal.

``dichotomy train`` (one run in ``--out``), ``dichotomy validate`` (one folder per claim) and ``dichotomy sweep``
(one folder per run) keep their results the same way::

    results = ResultSet(folder, key)
    verdict = results.check()          # every file the manifest lists intact, the same key and version?
    if not verdict:
        results.begin()                # the old manifest goes first: a kill from here on leaves nothing reusable
        ...compute, resume from checkpoints, write the files...
        results.seal(paths, checkpoints=checkpoints)   # the manifest last (the commit point), then the checkpoints go

The key is :func:`dichotomy.store.keys.fingerprint` of everything that decides the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dichotomy.store import manifest

__all__ = ["ResultSet"]


@dataclass(frozen=True)
class ResultSet:
    """The results in ``folder``, valid for ``key``, and the manifest that says so."""

    folder: Path
    key: str

    def check(self, *, other_version: bool = False) -> manifest.Verdict:
        """Whether the folder's results may be reused (:func:`dichotomy.store.manifest.check`).

        The verdict says why not.
        """
        return manifest.check(self.folder, self.key, other_version=other_version)

    def begin(self) -> None:
        """About to (re)compute: remove the manifest first, so the files about to change are never reused."""
        manifest.invalidate(self.folder)

    def listed(self) -> list[Path]:
        """The files the manifest lists, as paths."""
        return [self.folder / rel for rel in manifest.listed(self.folder)]

    def seal(self, paths, *, checkpoints=None, version: str | None = None, **extra) -> Path:
        """Write the manifest over ``paths`` (``extra`` goes into it), then clear ``checkpoints``.

        ``checkpoints`` is anything with a ``clear()``; the results they led to are now safe. Returns the manifest's
        path.
        """
        path = manifest.write(self.folder, paths, self.key, version=version, **extra)
        if checkpoints is not None:
            checkpoints.clear()
        return path
