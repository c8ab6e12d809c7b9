"""The Numba CPU backend: refimpl's models as fused, compiled training loops (docs/benchmarks.md).

``dichotomy.kernels.get_backend("numba")`` drives :data:`ENGINE` (one engine class per model, float64 and
float32, B >= 1 runs per engine) with the one driver of :mod:`dichotomy.run.driver`. Importing it sets
libgomp's spin count before Numba's OpenMP pool starts, unless the user chose a wait policy
(:func:`dichotomy.kernels.numba.threads.configure_openmp`).
"""

from dichotomy.kernels.numba import threads

threads.configure_openmp()  # before anything starts Numba's thread pool

from dichotomy.kernels.numba.diagonal_net import DiagonalNetEngine  # noqa: E402
from dichotomy.kernels.numba.flow import DiagonalNetFlow, MatrixFactorizationFlow  # noqa: E402
from dichotomy.kernels.numba.matrix_factorization import MatrixFactorizationEngine  # noqa: E402
from dichotomy.kernels.numba.relu_mlp import ReluMlpEngine  # noqa: E402
from dichotomy.kernels.registry import ModelEngines  # noqa: E402
from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp  # noqa: E402

ENGINE = ModelEngines("numba", {diagonal_net.NAME: DiagonalNetEngine,
                                matrix_factorization.NAME: MatrixFactorizationEngine, relu_mlp.NAME: ReluMlpEngine},
                      flow={diagonal_net.NAME: DiagonalNetFlow, matrix_factorization.NAME: MatrixFactorizationFlow})

__all__ = ["ENGINE", "threads"]
