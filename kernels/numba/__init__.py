"""The Numba CPU backend: refimpl's models as fused, compiled training loops (docs/benchmarks.md).

``kernels.get_backend("numba").run`` has refimpl.train.run's contract plus ``dtype="float32"``;
``kernels.numba.run_batch`` trains B configurations on one dataset in one call.
"""

from dichotomy.kernels.numba.diagonal_net import DiagonalNetBatch, DiagonalNetEngine
from dichotomy.kernels.numba.driver import run
from dichotomy.kernels.numba.matrix_factorization import MatrixFactorizationEngine
from dichotomy.kernels.numba.relu_mlp import ReluMlpEngine

ENGINES = {"diagonal_net": DiagonalNetEngine, "matrix_factorization": MatrixFactorizationEngine,
           "relu_mlp": ReluMlpEngine}
BATCHES = {"diagonal_net": DiagonalNetBatch}  # models whose batch shares work; others run in turn

from dichotomy.kernels.numba.batch import run_batch  # noqa: E402  (needs ENGINES and BATCHES above)

__all__ = ["BATCHES", "ENGINES", "run", "run_batch"]
