"""The CuPy backend without a GPU: every CUDA source compiles (NVRTC on the CPU), and the backend refuses
to run with a reason instead of failing deep inside CuPy. The kernels' numerics are tested on a GPU by the
``backend`` fixture of tests/test_backends.py (marked ``gpu``)."""

import re

import pytest

from dichotomy.kernels import BackendUnavailable, get_backend
from dichotomy.kernels.cupy import sources, unavailable_reason

KERNELS = {  # every extern "C" kernel each engine launches (kernels/cupy/engines.py)
    "diagonal_net": {"diag_weights", "diag_forward_loss", "diag_update", "diag_outputs", "finish_step"},
    "matrix_factorization": {"mc_slopes", "mc_update", "mc_outputs", "finish_step"},
    "relu_mlp": {"mlp_gather", "mlp_scatter", "ce_slopes", "sgd_update", "finish_step"},
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", sources.MODELS)
def test_every_cuda_source_compiles_for_hopper(model, dtype):
    ptx, compiler = sources.compile_ptx(model, dtype)
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx))
    assert entries == KERNELS[model], f"{compiler}: {entries ^ KERNELS[model]}"
    assert ".target sm_90" in ptx
    # float kernels must not compute in double: no f64 arithmetic outside conversions
    if dtype == "float32":
        assert not re.search(r"\b(add|mul|fma\.rn|div\.rn)\.f64\b", ptx), "a float kernel promotes to double"


def test_a_kernel_error_is_reported_with_the_compiler_log(monkeypatch):
    monkeypatch.setattr(sources, "source", lambda model: "extern \"C\" __global__ void k() { undefined_name; }")
    with pytest.raises(sources.CompileError, match="undefined_name"):
        sources.compile_ptx("diagonal_net")


def test_unknown_model_and_dtype_are_refused():
    with pytest.raises(Exception, match="no CUDA source"):
        sources.source("conv_net")
    with pytest.raises(Exception, match="dtype"):
        sources.options("float16")


def test_cupy_backend_says_why_it_cannot_run():
    reason = unavailable_reason()
    if reason is None:
        assert get_backend("cupy").name == "cupy"
        return
    with pytest.raises(BackendUnavailable, match="cupy backend cannot run here") as e:
        get_backend("cupy")
    assert reason in str(e.value)


def test_gpu_engines_import_without_a_gpu_and_cover_every_model():
    from dichotomy.kernels.cupy.engines import ENGINES as GPU
    from dichotomy.kernels.numba import ENGINES as CPU

    assert set(GPU) == set(CPU) == set(sources.MODELS)
    for engine in GPU.values():  # every engine launches only kernels its source defines
        assert engine.model in sources.MODELS
