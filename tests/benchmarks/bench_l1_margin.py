"""Time the max-L1-margin LP (column generation) at the paper's scale: n = 256, d up to 10^5, +-1 data.

    python tests/benchmarks/bench_l1_margin.py [d ...]

Prints, per d: wall time, pricing rounds, columns in the final restricted LP, the certified duality gap,
and whether the solution is the k-sparse teacher's direction. Not a test: run it by hand (docs/limits.md §4).
"""

import sys
import time

import numpy as np

from dichotomy.refimpl import data
from dichotomy.refimpl.limits import max_margin


def main(dims):
    print(f"{'d':>8} {'n':>5} {'seconds':>8} {'rounds':>6} {'columns':>8} {'gap':>9}  support")
    for d in dims:
        ds = data.sparse_linear_classification(np.random.default_rng(24181325235), d=d, n_train=256, n_test=1, k=3)
        start = time.perf_counter()
        sol = max_margin.max_l1_margin(ds.X_train, ds.y_train)
        seconds = time.perf_counter() - start
        support = np.flatnonzero(np.abs(sol.w) > 1e-8 * np.abs(sol.w).max())
        stats = sol.stats
        print(f"{d:>8} {256:>5} {seconds:>8.2f} {stats['rounds']:>6} {stats['columns']:>8} {sol.gap:>9.1e}  "
              f"{support[:6].tolist()}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [20_000, 100_000])
