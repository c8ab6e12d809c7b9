"""The two limits the paper's training passes through, and the switch between them (docs/limits.md).

- :mod:`~refimpl.limits.ntk`: NTK Gram matrices at theta_bar, constraint matrices.
- :mod:`~refimpl.limits.kernel_predictors`: K1 (kernel hard-margin SVM), K2 (min-norm interpolation),
  linearized GD in closed form.
- :mod:`~refimpl.limits.max_margin`, :mod:`~refimpl.limits.min_norm`: max-L1/L2-margin classifiers, min-L1
  interpolation, min-nuclear-norm completion.
- :mod:`~refimpl.limits.kkt`: KKT residuals of R1/R2 for models without a convex form.
- :mod:`~dichotomy.diagnosis`: distances along a trajectory, predicted and measured switch.
- :mod:`~refimpl.limits.qp`, :mod:`~refimpl.limits.l1_programs`: the solvers (SciPy NNLS, HiGHS).
"""
