"""Files that survive kills and full disks: atomic writes, checksums, and one writer per output folder.

Every file the package writes goes through :func:`atomic_write`: the bytes go to a temporary file in the same
folder, which is flushed and fsynced, renamed over the final name (atomic on POSIX), and the folder itself is
fsynced so the rename survives a power cut. A kill -9, a full disk or a read-only folder at any moment leaves
either the old file or the new one under the final name, never a truncated one; the temporary file is removed
on any error a process can see. docs/user-guide.md ("What survives what") lists the guarantees.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from dichotomy import signals
from dichotomy.errors import OutputLocked, StorageError

__all__ = ["OutputLocked", "StorageError", "atomic_write", "locked", "read_json", "save_npz", "sha256",
           "signals_held", "write_json", "write_text"]

LOCK_NAME = ".dichotomy.lock"
_UMASK = os.umask(0o022)  # read once at import (setting it is the only way to read it), and put back at once
os.umask(_UMASK)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refused(path: Path, e: OSError) -> StorageError:
    why = e.strerror or str(e)
    hint = "; free some space or choose another --out" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return StorageError(f"cannot write {path}: {why}; the file under that name (if any) is unchanged{hint}")


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block, so that a Ctrl-C or a ``kill`` lands between two files.

    Such a signal never lands inside a library's half-written zip: the block is one of the signal policy's
    deferred blocks (:func:`dichotomy.signals.deferred`), whose handlers only note the signal; it is honoured at
    the end of the outermost one. (Masking the signal with ``pthread_sigmask`` would not do: it masks one thread,
    and the kernel hands the signal to another, a BLAS worker, while CPython still runs the handler in the main
    thread.) Outside the main thread it does nothing: handlers can only be set there.
    """
    with signals.deferred(hold=True):
        yield


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically, through a temporary file beside it.

    ``write(f)`` fills the temporary file ``f`` (binary), then it is fsynced and renamed over ``path``. On any error the
    temporary file is removed and ``path`` is untouched; an OSError becomes a one-line :class:`StorageError`. SIGINT and
    SIGTERM wait until the file is in place.
    """
    with signals_held():
        return _atomic_write(Path(path), write)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _refused(path, e) from None
    try:  # signals are held (atomic_write), so nothing can land between mkstemp and here
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, StorageError):
            raise _refused(path, e) from None
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data))


def json_ready(obj):
    """The package's one JSON convention, applied recursively.

    NaN and infinities become null, NumPy scalars and arrays Python numbers and lists, and keys strings; anything else
    is left for :func:`json.dumps` to refuse.
    """
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, doc, **dump) -> Path:
    """:func:`atomic_write` of ``doc`` as JSON (a trailing newline; ``dump`` goes to :func:`json.dumps`)."""
    return write_text(path, json.dumps(doc, **{"indent": 1, **dump}) + "\n")


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """:func:`atomic_write` of a compressed ``.npz``; object arrays are refused (they would need pickle)."""
    for k, v in arrays.items():
        if np.asarray(v).dtype.hasobject:
            raise TypeError(f"array {k!r} holds Python objects; npz files here never use pickle")
    buffer = io.BytesIO()  # built in memory first: np.savez seeks, and a half-built zip must never be renamed
    with signals_held():
        np.savez_compressed(buffer, **arrays)
        return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | Path) -> dict | None:
    """A JSON object from ``path``, or None when the file is missing, unreadable, truncated or not an object."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _take(path: Path) -> int | None:
    """An fd holding the exclusive flock on ``path`` (created if missing), or None when a live process holds it.

    Retries when the file was unlinked (by :func:`remove_lock`) between our open and our flock, so that a lock is always
    on the file that is under the name.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _refused(path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def locked(folder: str | Path, command: str = "dichotomy") -> Iterator[Path]:
    """Hold ``folder``'s lock (``.dichotomy.lock``, an exclusive ``flock``) for the duration of the block.

    The lock file holds the PID, host and command of the holder, for the message a second process gets: it
    raises :class:`OutputLocked` at once rather than interleaving writes. The file is removed when the block
    ends. The kernel drops the lock when its holder exits, however it exits (kill -9 included), so the file a
    dead process leaves behind is taken over silently.
    """
    path = Path(folder) / LOCK_NAME
    fd = _take(path)
    if fd is None:
        try:
            holder = path.read_text(errors="replace").strip() or "another process"
        except OSError:
            holder = "another process"
        raise OutputLocked(f"{folder} is in use by {holder}; wait for it to finish or choose another --out")
    try:
        try:  # who holds it, for the message; the flock alone is the lock, so a full disk only loses the note
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()} ({command}, since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        except OSError:
            pass
        yield Path(folder)
    finally:
        try:  # removed while still held: a process that opened it meanwhile sees the inode change and retries
            path.unlink()
        except OSError:
            pass
        os.close(fd)


def remove_lock(folder: str | Path) -> bool:
    """Remove ``folder``'s lock file if no live process holds it (taking the lock to be sure); True if removed."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return True
    fd = _take(path)
    if fd is None:
        return False
    try:
        path.unlink()
    finally:
        os.close(fd)
    return True
