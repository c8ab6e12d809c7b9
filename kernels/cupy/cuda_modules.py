"""Compiled CUDA modules of the CuPy backend, and the one way the engines launch a kernel.

:func:`cupy` is the only place the backend imports CuPy (the tests substitute a stub for it). A
:class:`Kernels` holds one engine's kernel functions, looked up once when the engine is built (so that no
module is loaded while a CUDA graph is being captured, and no launch pays a lookup); every launch goes
through :meth:`Kernels.launch`, which skips empty grids and refuses arrays that are not C-contiguous.
"""

from __future__ import annotations

from functools import cache

from dichotomy.kernels.cupy.sources import options, source

THREADS = 256


def cupy():
    """The ``cupy`` module (imported on first use, so that importing the backend never needs a GPU)."""
    import cupy

    return cupy


@cache
def module(model: str, dtype: str):
    """The ``cupy.RawModule`` of ``model``'s source for ``dtype`` (float64 or float32), built once per process."""
    return cupy().RawModule(code=source(model), options=options(dtype, arch=None))  # CuPy targets the device


def blocks(count: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` covering ``count`` threads (at least one)."""
    return max(1, (int(count) + threads - 1) // threads)


class Kernels:
    """The kernels ``names`` of ``model``'s module for ``dtype``, fetched once."""

    def __init__(self, model: str, dtype: str, names):
        mod = module(model, dtype)
        self.functions = {name: mod.get_function(name) for name in names}

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple) -> None:
        """Launch kernel ``name`` on the current stream (captured when a graph capture is under way).

        A grid with a zero dimension is an invalid launch with nothing to do: it is skipped. Array
        arguments must be C-contiguous, since every kernel indexes them row-major; scalars must already be
        NumPy scalars of the kernel's parameter type (tests/kernels/cupy/test_sources.py checks every launch).
        """
        if min(grid) <= 0:
            return
        for position, arg in enumerate(args):
            flags = getattr(arg, "flags", None)
            if flags is not None and getattr(arg, "ndim", 0) > 0 and not flags.c_contiguous:
                raise ValueError(f"{name}: argument {position} is not C-contiguous")
        self.functions[name](grid, block, args)
