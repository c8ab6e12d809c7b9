"""Sharpness (refimpl/sharpness.py) against the exact Hessian of the diagonal net, and lr x sharpness against GD."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dichotomy.errors import ConfigError
from dichotomy.refimpl import data, diagonal_net, relu_mlp
from dichotomy.refimpl.sharpness import sharpness


def _exact_hessian(X, y, u, v, wd):
    """The Hessian of (1/n) sum (x_i . (u^2 - v^2) - y_i)^2 + (wd/2)(|u|^2 + |v|^2), by hand."""
    n = len(y)
    r = X @ (u * u - v * v) - y
    K, s = X.T @ X, X.T @ r
    Huu = 8 / n * np.outer(u, u) * K + 4 / n * np.diag(s)
    Hvv = 8 / n * np.outer(v, v) * K - 4 / n * np.diag(s)
    Huv = -8 / n * np.outer(u, v) * K
    return np.block([[Huu, Huv], [Huv.T, Hvv]]) + wd * np.eye(2 * len(u))


@settings(deadline=None, max_examples=15)
@given(d=st.sampled_from([5, 20, 60]), seed=st.integers(0, 2**16), wd=st.sampled_from([0.0, 0.01, 1.0]))
def test_sharpness_is_the_exact_hessian_s_top_eigenvalue(d, seed, wd):
    """d = 5 and 20 take the dense path, 60 (120 parameters) Lanczos."""
    rng = np.random.default_rng(seed)
    n = 7
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    u, v = rng.standard_normal(d), rng.standard_normal(d)
    exact = np.linalg.eigvalsh(_exact_hessian(X, y, u, v, wd))[-1]
    got = sharpness(diagonal_net, diagonal_net.Config(d=d, alpha=1.0), {"u": u, "v": v}, X, y, "squared", wd)
    assert got == pytest.approx(exact, rel=1e-7, abs=1e-9)


def test_gd_above_two_over_the_sharpness_leaves_the_minimum_and_below_stays():
    """At an interpolating minimum, GD at lr = 1.9 / s stays and GD at lr = 2.1 / s is pushed away: a step
    multiplies the top direction by 1 - lr s."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((3, 6)), rng.standard_normal(3)
    config = diagonal_net.Config(d=6, alpha=1.0)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    p = {"u": np.sqrt(np.maximum(w, 0) + 1.0), "v": np.sqrt(np.maximum(-w, 0) + 1.0)}  # u^2 - v^2 = w
    s = sharpness(diagonal_net, config, p, X, y, "squared")
    for factor, stays in ((1.9, True), (2.1, False)):
        q = {k: a + 1e-6 * rng.standard_normal(6) for k, a in p.items()}
        for _ in range(400):
            g = diagonal_net.loss_and_grad(config, q, X, y, "squared")[1]
            q = {k: q[k] - factor / s * g[k] for k in q}
        moved = max(np.max(np.abs(q[k] - p[k])) for k in p)
        assert (moved < 1e-4) == stays and (moved > 1e-3) != stays, (factor, moved)


def test_the_relu_mlp_has_a_sharpness_and_bad_input_is_one_line():
    ds = data.modular_arithmetic(np.random.default_rng(0), p=5, train_fraction=0.6)
    c = relu_mlp.Config(D=10, h=8, out=5)
    p = relu_mlp.init(c, np.random.default_rng(1))
    s = sharpness(relu_mlp, c, p, ds.X_train, ds.y_train, ds.loss, 0.01)
    assert np.isfinite(s) and s > 0.01
    with pytest.raises(ConfigError, match="weight decay wd must be a finite number >= 0"):
        sharpness(relu_mlp, c, p, ds.X_train, ds.y_train, ds.loss, -1.0)


def test_the_relu_mlp_s_sharpness_is_torch_autograd_s_hessian_eigenvalue():
    """An independent second derivative: PyTorch's autograd Hessian of the same objective (the peers extra)."""
    torch = pytest.importorskip("torch")
    ds = data.modular_arithmetic(np.random.default_rng(0), p=7, train_fraction=0.6)
    c = relu_mlp.Config(D=14, h=16, out=7)
    p = relu_mlp.init(c, np.random.default_rng(1))
    wd = 0.01
    X, y = torch.tensor(ds.X_train, dtype=torch.float64), torch.tensor(ds.y_train, dtype=torch.long)
    sizes = [p[k].size for k in ("W1", "b1", "W2")]

    def objective(t):
        W1, b1, W2 = torch.split(t, sizes)
        f = torch.relu(X @ W1.reshape(16, 14).T + b1) @ W2.reshape(7, 16).T
        return torch.nn.functional.cross_entropy(f, y) + wd / 2 * (t * t).sum()

    theta = torch.tensor(np.concatenate([p[k].ravel() for k in ("W1", "b1", "W2")]), dtype=torch.float64)
    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(objective, theta))[-1].item()
    assert sharpness(relu_mlp, c, p, ds.X_train, ds.y_train, ds.loss, wd) == pytest.approx(exact, rel=1e-7)
