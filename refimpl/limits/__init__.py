"""The two limits the paper's training passes through (docs/limits.md).

- :mod:`~refimpl.limits.ntk`: NTK Gram matrices at theta_bar, constraint matrices.
- :mod:`~refimpl.limits.kernel_predictors`: K1 (kernel hard-margin SVM), K2 (min-norm interpolation),
  linearized GD in closed form.
- :mod:`~refimpl.limits.max_margin`, :mod:`~refimpl.limits.min_norm`: max-L1/L2-margin classifiers, min-L1
  interpolation, min-nuclear-norm completion.
- :mod:`~refimpl.limits.kkt`: KKT residuals of R1/R2 for models without a convex form.
- :mod:`~refimpl.limits.predictors`: both limits on a probe set, distances to them, the predicted switch time
  (a trajectory's diagnosis, :mod:`dichotomy.diagnosis`, reads them).
- :mod:`~refimpl.limits.qp`, :mod:`~refimpl.limits.l1_programs`: the solvers (SciPy NNLS, HiGHS).
"""
