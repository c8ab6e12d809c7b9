"""Hypothesis strategies: small random instances of every model family (sizes and a seed are drawn)."""

import numpy as np
from hypothesis import strategies as st

from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp

seeds = st.integers(0, 2**32 - 1)


@st.composite
def diagonal_cases(draw, max_L=4):
    d, n, L = draw(st.integers(1, 8)), draw(st.integers(1, 6)), draw(st.integers(2, max_L))
    rng = np.random.default_rng(draw(seeds))
    config = diagonal_net.Config(d=d, alpha=1.0, L=L)
    params = {"u": rng.uniform(-1.5, 1.5, d), "v": rng.uniform(-1.5, 1.5, d)}
    X = rng.choice([-1.0, 1.0], size=(n, d)) if draw(st.booleans()) else rng.standard_normal((n, d))
    return diagonal_net, config, params, X, rng


@st.composite
def factorization_cases(draw):
    d, n = draw(st.integers(1, 6)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(seeds))
    config = matrix_factorization.Config(d=d, alpha=1.0)
    params = {"U": rng.standard_normal((d, d)), "V": rng.standard_normal((d, d))}
    X = rng.integers(0, d, size=(n, 2))  # repeated pairs and diagonal entries included
    return matrix_factorization, config, params, X, rng


@st.composite
def mlp_cases(draw, max_L=4):
    D, h, out = draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    L, n = draw(st.integers(2, max_L)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(seeds))
    config = relu_mlp.Config(D=D, h=h, out=out, L=L)
    params = relu_mlp.init(config, rng)
    params["b1"] = rng.standard_normal(h)  # a non-zero bias, so its gradient is exercised
    return relu_mlp, config, params, rng.standard_normal((n, D)), rng


any_case = st.one_of(diagonal_cases(), factorization_cases(), mlp_cases())


def random_like(params, rng):
    return {k: rng.standard_normal(p.shape) for k, p in params.items()}


def inner(a, b):
    return sum(np.vdot(a[k], b[k]).real for k in a)
