"""The Numba CPU backend: refimpl's models as fused, compiled training loops (docs/benchmarks.md).

``dichotomy.kernels.get_backend("numba")`` drives :data:`ENGINE` (one engine class per model, float64 and
float32, B >= 1 runs per engine) with the one driver of :mod:`dichotomy.refimpl.train`.
"""

from dichotomy.kernels.dispatch import ModelEngines
from dichotomy.kernels.numba.diagonal_net import DiagonalNetEngine
from dichotomy.kernels.numba.matrix_factorization import MatrixFactorizationEngine
from dichotomy.kernels.numba.relu_mlp import ReluMlpEngine
from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp

ENGINE = ModelEngines("numba", {diagonal_net.NAME: DiagonalNetEngine,
                                matrix_factorization.NAME: MatrixFactorizationEngine, relu_mlp.NAME: ReluMlpEngine})

__all__ = ["ENGINE"]
