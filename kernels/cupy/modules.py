"""Compiled CUDA modules of the CuPy backend, one per (model, dtype), built once per process."""

from __future__ import annotations

from functools import cache

from dichotomy.kernels.cupy.sources import options, source

THREADS = 256


@cache
def module(model: str, dtype: str):
    """The ``cupy.RawModule`` of ``model``'s source for ``dtype`` (float64 or float32)."""
    import cupy

    return cupy.RawModule(code=source(model), options=options(dtype, arch=None))  # CuPy targets the device


def kernel(model: str, dtype: str, name: str):
    return module(model, dtype).get_function(name)


def blocks(count: int, threads: int = THREADS) -> int:
    return max(1, (int(count) + threads - 1) // threads)
