"""The package's one fingerprint: a sha256 of everything that determines a result (docs/architecture.md).

Checkpoints key their runs with it, result sets their configs, sweeps their tasks: one scheme, so the same
inputs always give the same key.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["fingerprint"]


def fingerprint(*parts) -> str:
    """A sha256 over JSON-able values and NumPy arrays (dtype, shape and bytes), nested in dicts and lists."""
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, np.ndarray | np.generic):
            a = np.ascontiguousarray(x)
            h.update(f"ndarray:{a.dtype.str}:{a.shape}:".encode())
            h.update(a.tobytes())
        elif isinstance(x, dict):
            h.update(b"dict:")
            for k in sorted(x, key=str):
                h.update(f"{k!s}=".encode())
                feed(x[k])
        elif isinstance(x, list | tuple):
            h.update(f"list:{len(x)}:".encode())
            for v in x:
                feed(v)
        else:
            h.update(json.dumps(x, sort_keys=True, default=repr).encode())
        h.update(b";")

    for p in parts:
        feed(p)
    return h.hexdigest()
