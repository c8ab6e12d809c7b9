"""The Numba CPU backend: refimpl's models as fused, compiled training loops (docs/benchmarks.md).

``kernels.get_backend("numba").run`` has refimpl.train.run's contract plus ``dtype="float32"``.
"""

from kernels.numba.diagonal_net import DiagonalNetEngine
from kernels.numba.driver import run
from kernels.numba.matrix_factorization import MatrixFactorizationEngine
from kernels.numba.relu_mlp import ReluMlpEngine

ENGINES = {"diagonal_net": DiagonalNetEngine, "matrix_factorization": MatrixFactorizationEngine,
           "relu_mlp": ReluMlpEngine}

__all__ = ["ENGINES", "run"]
