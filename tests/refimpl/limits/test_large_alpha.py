"""The kernel at large alpha (issue 29, claim 4): the package's Grams and kernel predictors do not overflow.

NTK closed forms taken at theta(0) = alpha theta_bar grow like alpha^(2(L-1)) and overflow float64 (NaN in float32,
~1e18 reported against a popular NTK library in float64). Here the kernel predictors work in units of
alpha^(2(L-1)): their Gram is taken at theta_bar, so their predictions are the same at every alpha the presets allow
and far beyond (docs/limits.md §2). The raw Gram at theta(0) is exact while it fits in float64, and a one-line
error beyond.
"""

import numpy as np
import pytest

from dichotomy.errors import ConfigError
from dichotomy.refimpl import data, diagonal_net, matrix_factorization
from dichotomy.refimpl.limits import kernel_predictors, ntk

ALPHAS = [1.0, 128.0, 1e4, 1e8, 1e30, 1e100, 1e200, 1e300]


def _problem(kind):
    if kind == "completion":
        ds = data.multiplication_table(np.random.default_rng(0), d=10, train_fraction=0.3)
        return matrix_factorization, ds, lambda a: matrix_factorization.Config(d=10, alpha=a)
    ds = data.sparse_linear_classification(np.random.default_rng(0), d=50, n_train=20, n_test=50, k=3)
    L = 3 if kind == "diagonal L=3" else 2
    return diagonal_net, ds, lambda a: diagonal_net.Config(d=50, alpha=a, L=L)


@pytest.mark.parametrize("kind", ["diagonal L=2", "diagonal L=3", "completion"])
def test_the_kernel_predictor_is_the_same_at_every_alpha_up_to_1e300(kind):
    module, ds, config_of = _problem(kind)
    outputs = []
    for alpha in ALPHAS:
        c = config_of(alpha)
        with np.errstate(over="raise", invalid="raise"):  # no overflow anywhere on the way
            kp = kernel_predictors.kernel_predictor(module, c, module.init(c), ds.X_train, ds.y_train, ds.loss)
            outputs.append(kp.predict(module, c, ds.X_test))
    for alpha, f in zip(ALPHAS, outputs, strict=True):
        assert np.all(np.isfinite(f)), alpha
        np.testing.assert_allclose(f, outputs[0], rtol=1e-12, atol=1e-12 * np.abs(outputs[0]).max(), err_msg=alpha)


@pytest.mark.parametrize("kind", ["diagonal L=2", "completion"])
def test_the_raw_gram_scales_as_alpha_to_2_l_minus_1_then_refuses_in_one_line(kind):
    module, ds, config_of = _problem(kind)
    X = ds.X_train
    unit = ntk.gram(module, config_of(1.0), module.init(config_of(1.0)), X)
    for alpha in (1e4, 1e50, 1e100):  # L = 2 in both: alpha^2
        c = config_of(alpha)
        np.testing.assert_allclose(ntk.gram(module, c, module.init(c), X) / alpha**2, unit, rtol=1e-12,
                                   atol=1e-12 * np.abs(unit).max())
    c = config_of(1e200)
    with pytest.raises(ConfigError, match=r"not finite in float64.*unit-scale init"):
        ntk.gram(module, c, module.init(c), X)
    np.testing.assert_allclose(ntk.gram(module, c, ntk.unit_init(module, c, module.init(c)), X), unit, rtol=1e-12,
                               atol=1e-12 * np.abs(unit).max())
