"""The CUDA C sources of the CuPy backend, and their compilation to PTX without a GPU.

Each model's kernels live in ``<model>.cu``; ``common.cuh`` (losses, block reductions, the end-of-step
bookkeeping) is prepended. The working type is ``real_t``, fixed at compile time with ``-Dreal_t=double``
or ``-Dreal_t=float``. :func:`compile_ptx` runs NVRTC on the CPU (through ``cupy.cuda.nvrtc`` when CuPy is
installed, else through ctypes on the ``nvidia-cuda-nvrtc`` wheel's library that ``cuda-toolkit[nvrtc]``
installs, else ``nvcc -ptx``), so a kernel error fails the test suite on machines without a GPU.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dichotomy.errors import DichotomyError

HERE = Path(__file__).parent
MODELS = ("diagonal_net", "matrix_factorization", "relu_mlp")
REAL_TYPES = {"float64": "double", "float32": "float"}
ARCH = "sm_90"  # Hopper (H100/H200); PTX for it is forward-compatible


class CompileError(DichotomyError, RuntimeError):
    """A CUDA source failed to compile; the message holds the compiler's log."""


def source(model: str) -> str:
    """The full translation unit of ``model``: common.cuh followed by <model>.cu."""
    if model not in MODELS:
        raise DichotomyError(f"no CUDA source for {model!r}; the sources are {', '.join(MODELS)}")
    return (HERE / "common.cuh").read_text() + "\n" + (HERE / f"{model}.cu").read_text()


def options(dtype: str, arch: str | None = ARCH) -> tuple[str, ...]:
    """NVRTC options: the working type, C++17, and the target architecture (None: left to the caller)."""
    if dtype not in REAL_TYPES:
        raise DichotomyError(f"dtype must be one of {', '.join(REAL_TYPES)}, got {dtype!r}")
    target = () if arch is None else (f"--gpu-architecture=compute_{arch.split('_')[1]}",)
    return (f"-Dreal_t={REAL_TYPES[dtype]}", *target, "--std=c++17")


def compile_ptx(model: str, dtype: str = "float64", arch: str = ARCH) -> tuple[str, str]:
    """Compile ``model``'s source to PTX on the CPU; returns (ptx, compiler used). Raises CompileError."""
    src, opts = source(model), options(dtype, arch)
    for name, compiler in (("cupy.cuda.nvrtc", _cupy_nvrtc), ("libnvrtc (ctypes)", _ctypes_nvrtc),
                           ("nvcc", _nvcc)):
        ptx = compiler(src, opts, arch)
        if ptx is not None:
            return ptx, name
    raise CompileError("no CUDA compiler found: install the test extra (cuda-toolkit[nvrtc]) or put nvcc on PATH")


def _cupy_nvrtc(src, opts, arch):
    try:
        from cupy.cuda import nvrtc
    except Exception:  # CuPy absent, or present without its CUDA libraries
        return None
    try:
        prog = nvrtc.createProgram(src, "kernel.cu", [], [])
    except Exception:
        return None
    try:
        try:
            nvrtc.compileProgram(prog, list(opts))
        except nvrtc.NVRTCError:
            raise CompileError(nvrtc.getProgramLog(prog)) from None
        return nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)


def _find_libnvrtc() -> str | None:
    for root in sys.path:
        for pattern in ("nvidia/cu*/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*"):
            found = sorted(p for p in glob.glob(os.path.join(root, pattern)) if "builtins" not in p)
            if found:
                return found[-1]
    return None


def _ctypes_nvrtc(src, opts, arch):
    path = _find_libnvrtc()
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"kernel.cu", 0, None, None) != 0:
        raise CompileError("nvrtcCreateProgram failed")
    try:
        argv = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
        status = lib.nvrtcCompileProgram(prog, len(opts), argv)
        if status != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise CompileError(log.value.decode(errors="replace"))
        size = ctypes.c_size_t()
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _nvcc(src, opts, arch):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        cu, ptx = Path(tmp) / "kernel.cu", Path(tmp) / "kernel.ptx"
        cu.write_text(src)
        define = next(o for o in opts if o.startswith("-D"))
        done = subprocess.run([nvcc, "-ptx", f"-arch={arch}", define, "-o", str(ptx), str(cu)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(done.stderr)
        return ptx.read_text()
