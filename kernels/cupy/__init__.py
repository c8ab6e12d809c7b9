"""The CuPy GPU backend (issue #5): refimpl's models as CUDA kernels, same ``run`` contract as numba.

Importing this package never touches a GPU. :func:`unavailable_reason` says why the backend cannot run
here (CuPy missing, or no CUDA device), and ``kernels.get_backend("cupy")`` raises
:class:`kernels.BackendUnavailable` with that reason. The CUDA sources in ``sources/`` are compiled to PTX
on the CPU by the test suite (NVRTC), so they are checked on every machine; the engines themselves run only
on a GPU and have not yet been run on one (docs/benchmarks.md, "GPU").
"""

from __future__ import annotations


def unavailable_reason() -> str | None:
    """None if CuPy imports and sees a CUDA device; else why not, and what to do."""
    try:
        import cupy
    except Exception as e:  # ImportError, or CuPy present without its CUDA libraries
        return f'CuPy is not importable ({type(e).__name__}: {e}); install the gpu extra: pip install ".[gpu]"'
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"CuPy imports but no CUDA device is usable ({type(e).__name__}: {e})"
    return None if count > 0 else "CuPy imports but sees no CUDA device"


def run(model, config, params, data, **kwargs):
    """``refimpl.train.run``'s contract on the GPU (plus ``dtype="float32"``); see kernels/numba/driver.py."""
    from dichotomy.kernels.cupy.engines import ENGINES
    from dichotomy.kernels.numba.driver import run as drive

    return drive(model, config, params, data, engines=ENGINES, backend="cupy", **kwargs)
