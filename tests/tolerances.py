"""The one tolerance table of the test suite: (dtype, check) -> relative tolerance, each with its reason."""

import numpy as np

TOL = {
    # complex step has no subtractive cancellation: only rounding in the forward pass remains.
    (np.float64, "complex_step"): 1e-12,
    # central differences, step 1e-6: truncation O(eps^2) ~ 1e-12 plus rounding 1e-16/eps ~ 1e-10, times
    # the size of third derivatives; 1e-6 leaves room for ReLU nets with a few layers.
    (np.float64, "central_difference"): 1e-6,
    # algebraic identities (homogeneity c^L, transposes, one GD step) differ only by rounding.
    (np.float64, "identity"): 1e-12,
    # a fast engine against the oracle after a few hundred fused steps: engines reassociate sums (SIMD lanes,
    # BLAS blocking), ~1e-16 per step, amplified by the dynamics' growth over the run.
    (np.float64, "backend"): 1e-8,
    # float32 engines against the float64 oracle over 200 steps of well-conditioned runs: single precision's
    # 6e-8 per operation, accumulated over the run (measured drift <= 6e-7, docs/benchmarks.md).
    (np.float32, "backend"): 1e-4,
}


def tol(check: str, dtype=np.float64) -> float:
    return TOL[(dtype, check)]
