"""Dataset generators: pinned statistics, exact structure, reproducibility, one-line errors (docs/math.md §6)."""

import numpy as np
import pytest

from dichotomy import errors
from dichotomy.refimpl import data


def test_sparse_linear_classification_structure(rng):
    ds = data.sparse_linear_classification(rng, d=500, n_train=2000, n_test=300, k=5)
    assert ds.X_train.dtype == np.int8 and ds.X_train.shape == (2000, 500) and ds.X_test.shape == (300, 500)
    assert set(np.unique(ds.X_train)) == {-1, 1} and set(np.unique(ds.y_train)) == {-1.0, 1.0}
    w = np.array(ds.info["w_star"])
    np.testing.assert_array_equal(ds.y_train, np.sign(ds.X_train[:, :5] @ w))
    assert abs(ds.X_train.mean()) < 0.01  # uniform on {-1, +1}: mean 0 to within 4 standard errors
    assert abs(ds.y_train.mean()) < 0.1
    assert ds.loss == "logistic" and ds.task == "binary"


def test_l2_separated_gaussians_have_margin_gamma():
    ds = data.l2_separated_gaussians(np.random.default_rng(5), d=50, n_train=400, n_test=400, gamma=6.0)
    w_star = np.random.default_rng(5).standard_normal(50)  # the generator's first draw
    w_star /= np.linalg.norm(w_star)
    X, y = ds.X_train, ds.y_train
    assert np.all(y * (X @ w_star) >= 3.0 - 1e-12)  # every point at least gamma/2 from the hyperplane
    noise = X - 3.0 * y[:, None] * w_star  # z ~ N(0, I)
    assert np.std(noise) == pytest.approx(1.0, rel=0.02)
    assert np.mean(y == 1) == pytest.approx(0.5, abs=0.1)


def test_multiplication_table_matches_the_official_split_size(rng):
    ds = data.multiplication_table(rng, d=97, train_fraction=0.05)
    assert ds.X_train.shape == (470, 2) and ds.X_test.shape == (9409 - 470, 2)
    i, j = ds.X_train.T
    np.testing.assert_allclose(ds.y_train, i * j / 97**2, rtol=1e-15)
    both = np.vstack([ds.X_train, ds.X_test])
    assert len({tuple(p) for p in both}) == 9409  # a partition of all entries
    assert np.mean(ds.y_test**2) == pytest.approx(0.1077, abs=2e-3)  # Fig. 3's test MSE at W = 0
    # The kernel-phase plateau of Fig. 3 (docs/paper.md §4.4): the test MSE of predicting X* on Omega and
    # Omega^T and 0 elsewhere; the paper reads 0.1023 off its figure.
    observed = {tuple(p) for p in ds.X_train}
    unseen = np.array([(j, i) not in observed for i, j in ds.X_test])
    assert np.sum(ds.y_test[unseen] ** 2) / len(ds.y_test) == pytest.approx(0.1023, abs=1.5e-3)


@pytest.mark.parametrize("op,fn", [("+", lambda a, b, p: (a + b) % p), ("-", lambda a, b, p: (a - b) % p),
                                   ("*", lambda a, b, p: (a * b) % p),
                                   ("/", lambda a, b, p: (a * pow(int(b), -1, p)) % p)])
def test_modular_arithmetic_labels_and_two_hot_inputs(rng, op, fn):
    ds = data.modular_arithmetic(rng, p=13, op=op, train_fraction=0.4)
    N = 13 * 12 if op == "/" else 169
    assert ds.X_train.shape == (int(0.4 * N), 26) and ds.X_train.shape[0] + ds.X_test.shape[0] == N
    X = np.vstack([ds.X_train, ds.X_test])
    assert np.all(X.sum(axis=1) == 2) and np.all(X[:, :13].sum(1) == 1)
    a, b = X[:, :13].argmax(1), X[:, 13:].argmax(1)
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_test]),
                                  [fn(x, z, 13) for x, z in zip(a, b, strict=True)])
    assert ds.loss == "cross_entropy"


def test_paper_modular_split_size(rng):
    assert data.modular_arithmetic(rng, p=97).X_train.shape == (3763, 194)


def test_same_seed_same_data_different_seed_different_data():
    a, b, c = (data.make("multiplication_table", s, d=10, train_fraction=0.3) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)


def test_pinned_draw_is_stable():
    """Regression pin: the generators' use of the rng must not change silently (it would change every result)."""
    ds = data.make("sparse_linear_classification", 24181325235, d=20, n_train=4, n_test=2, k=3)
    assert ds.info["w_star"] == [1, -1, 1]
    assert ds.X_train[0, :8].tolist() == [1, -1, -1, -1, -1, 1, -1, 1]


@pytest.mark.parametrize("call,match", [
    (lambda r: data.sparse_linear_classification(r, d=10, n_train=5, n_test=5, k=2), "odd"),
    (lambda r: data.sparse_linear_classification(r, d=2, n_train=5, n_test=5, k=3), "fit"),
    (lambda r: data.multiplication_table(r, d=10, train_fraction=1.0), "between 0 and 1"),
    (lambda r: data.multiplication_table(r, d=10, train_fraction=0.001), "no train"),
    (lambda r: data.modular_arithmetic(r, p=12, op="/"), "prime"),
    (lambda r: data.modular_arithmetic(r, p=11, op="^"), "unknown operation"),
    (lambda r: data.l2_separated_gaussians(None, d=3, n_train=2, n_test=2), "rng"),
    (lambda r: data.make("mnist", 0), "unknown dataset"),
    (lambda r: data.make("multiplication_table", 0, k=3), "multiplication_table"),
])
def test_bad_arguments_raise_one_line_errors(rng, call, match):
    with pytest.raises(errors.ConfigError, match=match) as info:
        call(rng)
    assert "\n" not in str(info.value)
