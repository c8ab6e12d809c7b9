"""Manifests: what makes a folder of results trustworthy enough to reuse.

A result set (one ``dichotomy train`` run, one claim of ``dichotomy validate``) ends with ``manifest.json``,
written last and atomically::

    {"schema_version": 1, "package": "dichotomy-grokking", "package_version": "0.1.0",
     "config_hash": "...", "files": {"results.npz": {"sha256": "...", "bytes": 1234}, ...}}

:func:`check` says whether a folder may be reused for a given config hash, and if not, why, in one line that
names the file: a missing manifest (the set was never finished: a kill while saving), a missing, truncated or
edited file (its size or sha256 differs), another config, or another package version.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from dichotomy.store import files

NAME = "manifest.json"
SCHEMA_VERSION = 1
PACKAGE = "dichotomy-grokking"


def package_version() -> str:
    """The installed version of the package (``0+unknown`` in a checkout that was never installed)."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def write(folder: str | Path, paths, config_hash: str, *, version: str | None = None, **extra) -> Path:
    """Write ``folder/manifest.json`` over ``paths`` (files inside ``folder``), last, atomically.

    ``version`` is the package version that computed the results (default this one; a set reused from another version
    keeps its own).
    """
    folder = Path(folder)
    entries = {}
    for p in sorted(Path(p) for p in paths):
        rel = p.relative_to(folder).as_posix()
        entries[rel] = {"sha256": files.sha256(p), "bytes": p.stat().st_size}
    doc = {"schema_version": SCHEMA_VERSION, "package": PACKAGE, "package_version": version or package_version(),
           "config_hash": config_hash, **extra, "files": entries}
    return files.write_json(folder / NAME, doc)


@dataclass(frozen=True)
class Verdict:
    """Whether a folder's results may be reused: ``ok``, else ``reason`` (one line naming the file)."""

    ok: bool
    reason: str = ""
    version: str | None = None  # the package version that wrote the set, when the manifest is readable

    def __bool__(self) -> bool:
        return self.ok


def check(folder: str | Path, config_hash: str, *, other_version: bool = False) -> Verdict:
    """Whether ``folder``'s results may be reused for ``config_hash``.

    Every file the manifest lists must be there with its recorded size and sha256. A set written by another package
    version is refused unless ``other_version`` (the caller then records that it reused one).
    """
    folder = Path(folder)
    path = folder / NAME
    if not path.exists():
        return Verdict(False, f"{path} is missing (the set was never finished)")
    doc = files.read_json(path)
    if doc is None or not isinstance(doc.get("files"), dict) or doc.get("schema_version") != SCHEMA_VERSION:
        return Verdict(False, f"{path} is unreadable or of another schema")
    version = doc.get("package_version")
    if doc.get("config_hash") != config_hash:
        return Verdict(False, f"{path} is for another config (hash {doc.get('config_hash')}, now {config_hash})",
                       version)
    if version != package_version() and not other_version:
        return Verdict(False, f"{path}: written by {PACKAGE} {version}, this is {package_version()} "
                              "(--reuse-other-version reuses it)", version)
    for rel, entry in doc["files"].items():
        p = folder / rel
        if not isinstance(entry, dict) or ".." in Path(rel).parts or Path(rel).is_absolute():
            return Verdict(False, f"{path} has a bad entry for {rel}", version)
        if not p.is_file():
            return Verdict(False, f"{p} is missing", version)
        if p.stat().st_size != entry.get("bytes"):
            return Verdict(False, f"{p} has {p.stat().st_size} bytes, the manifest says {entry.get('bytes')} "
                                  "(truncated or edited)", version)
        if files.sha256(p) != entry.get("sha256"):
            return Verdict(False, f"{p} differs from its sha256 in the manifest (edited or damaged)", version)
    return Verdict(True, version=version)


def listed(folder: str | Path) -> list[str]:
    """The files (relative paths) ``folder``'s manifest lists; empty if it has none."""
    doc = files.read_json(Path(folder) / NAME)
    return sorted(doc["files"]) if doc is not None and isinstance(doc.get("files"), dict) else []


def invalidate(folder: str | Path) -> None:
    """Remove ``folder``'s manifest first, so that a set being rewritten is never taken as finished."""
    try:
        (Path(folder) / NAME).unlink()
    except FileNotFoundError:
        pass
