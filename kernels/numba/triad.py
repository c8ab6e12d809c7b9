"""The STREAM triad a[i] = b[i] + s c[i]: the memory bandwidth ceiling ``dichotomy bench`` measures."""

from __future__ import annotations

from numba import njit, prange


@njit(parallel=True, cache=True)
def triad(a, b, c, s):
    """a[i] = b[i] + s * c[i] over every i, in parallel (24 bytes per element: two reads and a write)."""
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]
