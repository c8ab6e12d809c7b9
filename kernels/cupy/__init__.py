"""The CuPy GPU backend (issue #5): refimpl's models as CUDA kernels, on the engine protocol.

``kernels.get_backend("cupy")`` drives :data:`dichotomy.kernels.cupy.engines.ENGINE` with the one driver of
:mod:`dichotomy.run.driver`, like every other backend. Importing this package never touches a GPU.
:func:`unavailable_reason` says why the backend cannot run here (CuPy missing, or no CUDA device), and
``kernels.get_backend("cupy")`` raises :class:`kernels.BackendUnavailable` with that reason.

Without a GPU the test suite (tests/kernels/cupy/test_sources.py) compiles the CUDA sources in ``sources/`` to PTX
with NVRTC on the CPU, and drives the engines on a stub of CuPy whose kernels are NumPy emulations, checking
every launch against the kernel's CUDA signature. The kernels themselves have not yet run on a GPU
(docs/benchmarks.md, "GPU").
"""

from __future__ import annotations


def unavailable_reason() -> str | None:
    """None if CuPy imports and sees a CUDA device; else why not, and what to do."""
    try:
        import cupy
    except Exception as e:  # ImportError, or CuPy present without its CUDA libraries
        return (f'CuPy is not importable ({type(e).__name__}: {e}); install the gpu extra: pip install '
                '"dichotomy-grokking[gpu]" (in a checkout: pip install ".[gpu]")')
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"CuPy imports but no CUDA device is usable ({type(e).__name__}: {e})"
    return None if count > 0 else "CuPy imports but sees no CUDA device"
