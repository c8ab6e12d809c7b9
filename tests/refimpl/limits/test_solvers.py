"""Every limit solver against an independent formulation (docs/limits.md): primal vs dual, column generation
vs the dense LP, the nuclear-norm SDP's dual vs cvxpy's primal, Gram closed forms vs Jacobian products."""

import cvxpy as cp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import example, given
from hypothesis import strategies as st

from dichotomy import errors
from dichotomy.refimpl import data, diagonal_net, matrix_factorization, relu_mlp
from dichotomy.refimpl.limits import kernel_predictors, kkt, max_margin, min_norm, ntk, qp
from dichotomy.refimpl.params import flatten
from tests.cases import any_case, random_like, seeds
from tests.tolerances import tol


@given(any_case)
def test_jvp_is_the_jacobian_times_the_tangent(case):
    model, config, params, X, rng = case
    t = random_like(params, rng)
    J = model.ntk_features(config, params, X)
    np.testing.assert_allclose(model.jvp(config, params, X, t), J @ flatten(t), rtol=tol("identity"), atol=1e-12)


@given(any_case)
def test_closed_form_gram_is_the_jacobian_product(case):
    """Diagonal net: X diag(L^2 (u^{2L-2} + v^{2L-2})) X^T; factorization: the delta-M formula (docs/limits.md §2)."""
    model, config, params, X, rng = case
    J = model.ntk_features(config, params, X)
    K = np.tensordot(J, J, axes=([-1], [-1]))
    np.testing.assert_allclose(ntk.gram(model, config, params, X), K, rtol=tol("identity"), atol=1e-12)


@st.composite
def separable_features(draw):
    """Random constraint vectors phi_i (m, P) with a known strictly feasible direction."""
    m, P = draw(st.integers(1, 12)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(seeds))
    Phi = rng.standard_normal((m, P))
    direction = rng.standard_normal(P)
    Phi *= np.sign(Phi @ direction)[:, None]
    Phi[Phi @ direction == 0] = direction
    return Phi


@given(separable_features())
def test_hard_margin_dual_matches_the_primal_qp(Phi):
    """NNLS on the Gram (dual) against Clarabel on min 1/2 ||h||^2 s.t. Phi h >= 1 (primal)."""
    sol = qp.hard_margin(Phi @ Phi.T)
    h = Phi.T @ sol.alpha
    assert sol.gap <= 1e-9 and np.all(sol.alpha >= 0)
    # feasible to rounding, relative to the largest constraint value (a badly scaled row, 1e-3 against 1.5,
    # makes ||h|| ~ 1e3 and the smallest margin 1 - 1e-10 in exact arithmetic's neighbourhood)
    q = Phi @ h
    assert np.min(q) >= 1 - 1e-10 * max(1.0, np.abs(q).max())
    var = cp.Variable(Phi.shape[1])
    primal = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(var)), [Phi @ var >= 1])
    primal.solve(solver="CLARABEL")
    assert sol.norm_sq / 2 == pytest.approx(primal.value, rel=1e-6)
    np.testing.assert_allclose(h, var.value, atol=1e-5 * max(1, np.abs(h).max()))


def test_hard_margin_reports_infeasible_constraints():
    phi = np.array([[1.0, 2.0]])
    with pytest.raises(errors.ConfigError, match="infeasible"):
        qp.hard_margin(np.vstack([phi, -phi]) @ np.vstack([phi, -phi]).T)


@st.composite
def small_classification(draw):
    d, n = draw(st.integers(2, 12)), draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(seeds))
    X = rng.choice([-1, 1], size=(n, d)).astype(np.int8)
    y = np.where(X[:, 0] + X[:, 1] + X[:, -1] >= 0, 1, -1) if d >= 3 else X[:, 0].astype(np.int64)
    return X, y


def _dense_l1(A, b, equality):
    """The same LP with every column at once, through cvxpy (an independent formulation)."""
    w = cp.Variable(A.shape[1])
    cons = [A @ w == b] if equality else [A @ w >= b]
    prob = cp.Problem(cp.Minimize(cp.norm1(w)), cons)
    prob.solve(solver="HIGHS")  # the full dense LP, simplex: exact, and no column generation
    return prob.value, prob.status


@given(small_classification())
def test_max_l1_margin_matches_the_dense_lp(case):
    X, y = case
    A = X.astype(float) * y[:, None]
    value, status = _dense_l1(A, np.ones(len(y)), equality=False)
    if status != cp.OPTIMAL:
        with pytest.raises(errors.ConfigError, match="not linearly separable"):
            max_margin.max_l1_margin(X, y)
        return
    sol = max_margin.max_l1_margin(X, y)
    assert np.abs(sol.w).sum() == pytest.approx(value, rel=1e-6)
    assert np.min(A @ sol.w) >= 1 - 1e-8 and sol.gap <= 1e-9
    assert sol.margin == pytest.approx(1 / np.abs(sol.w).sum())


def test_max_l1_margin_brute_force_on_a_tiny_instance():
    """Brute force: the best feasible point of a 0.1-grid over [-2, 2]^3. Labels are the majority of the 3
    coordinates; summing the first three constraints gives w1 + w2 + w3 >= 3, so the optimum (1, 1, 1),
    ||w||_1 = 3, lies on the grid."""
    X = np.array([[1, 1, -1], [1, -1, 1], [-1, 1, 1], [-1, -1, 1], [1, 1, 1]], dtype=np.int8)
    y = np.array([1, 1, 1, -1, 1])
    grid = np.array(np.meshgrid(*[np.linspace(-2, 2, 41)] * 3)).reshape(3, -1).T
    feasible = grid[np.all((X @ grid.T) * y[:, None] >= 1 - 1e-12, axis=0)]
    best = np.abs(feasible).sum(axis=1).min()
    assert np.abs(max_margin.max_l1_margin(X, y).w).sum() == pytest.approx(best, abs=1e-9)


@given(small_classification(), seeds)
def test_min_l1_interpolation_matches_the_dense_lp(case, seed):
    X, _ = case
    y = np.random.default_rng(seed).standard_normal(X.shape[0])
    value, status = _dense_l1(X.astype(float), y, equality=True)
    if status != cp.OPTIMAL:
        with pytest.raises(errors.ConfigError, match="no solution"):
            min_norm.min_l1_interpolation(X, y)
        return
    sol = min_norm.min_l1_interpolation(X, y)
    assert sol.norm == pytest.approx(value, rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(X @ sol.w, y, atol=1e-8)


def test_column_generation_finds_the_sparse_teacher_without_pricing_every_column_in():
    ds = data.sparse_linear_classification(np.random.default_rng(3), d=5000, n_train=200, n_test=10, k=3)
    sol = max_margin.max_l1_margin(ds.X_train, ds.y_train)
    support = np.flatnonzero(np.abs(sol.w) > 1e-8 * np.abs(sol.w).max())
    np.testing.assert_array_equal(support, [0, 1, 2])  # w* is supported on the first k coordinates
    assert sol.margin == pytest.approx(1 / 3) and sol.gap <= 1e-9


def test_max_l2_margin_matches_scipy_slsqp_on_the_primal(rng):
    X = rng.standard_normal((15, 6))
    y = np.sign(X @ rng.standard_normal(6))
    sol = max_margin.max_l2_margin(X, y)
    res = scipy.optimize.minimize(lambda w: w @ w / 2, np.zeros(6), jac=lambda w: w, method="SLSQP",
                                  constraints=[{"type": "ineq", "fun": lambda w: y * (X @ w) - 1,
                                                "jac": lambda w: y[:, None] * X}], options={"ftol": 1e-14})
    np.testing.assert_allclose(sol.w, res.x, atol=1e-6)
    assert sol.margin == pytest.approx(1 / np.linalg.norm(sol.w)) and sol.gap <= 1e-9


@given(st.integers(2, 7), st.floats(0.3, 0.9), seeds)
@example(4, 0.5, 8388608)  # Clarabel says optimal_inaccurate here; the certificate is 1e-11
def test_nuclear_norm_completion_matches_the_primal_sdp(d, fraction, seed):
    """The dual SDP (ours) against cvxpy's normNuc primal on the same observations."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(d)
    M = np.outer(u, u) - 0.5 * np.outer(u[::-1], u[::-1])
    n = max(1, int(fraction * d * d))
    X = np.array(np.unravel_index(rng.choice(d * d, n, replace=False), (d, d))).T
    sol = min_norm.nuclear_norm_completion(d, X, M[X[:, 0], X[:, 1]])
    W = cp.Variable((d, d), symmetric=True)
    primal = cp.Problem(cp.Minimize(cp.normNuc(W)), [W[X[:, 0], X[:, 1]] == M[X[:, 0], X[:, 1]]])
    primal.solve(solver="CLARABEL")
    assert sol.nuclear_norm == pytest.approx(primal.value, rel=1e-6, abs=1e-8)
    assert sol.residual <= 1e-7 and sol.gap <= 1e-6
    np.testing.assert_allclose(sol.W, sol.W.T)


def test_kernel_svm_of_the_diagonal_net_is_the_max_l2_margin_classifier(rng):
    """Corollary 3.6: the diagonal net's NTK is linear, so K1's predictor is the max-L2-margin direction."""
    ds = data.sparse_linear_classification(rng, d=300, n_train=40, n_test=50, k=3)
    config = diagonal_net.Config(d=300, alpha=5.0)
    kp = kernel_predictors.kernel_predictor(diagonal_net, config, diagonal_net.init(config), ds.X_train,
                                            ds.y_train, ds.loss)
    w2 = max_margin.max_l2_margin(ds.X_train, ds.y_train).w
    f_kernel, f_l2 = kp.predict(diagonal_net, config, ds.X_test), ds.X_test @ w2
    assert np.dot(f_kernel, f_l2) / np.linalg.norm(f_kernel) / np.linalg.norm(f_l2) == pytest.approx(1, abs=1e-12)
    assert kp.problem == "K1" and kp.accuracy <= 1e-9
    # gamma_ntk: the unit-norm theta_bar has u = v = 1/sqrt(2d), so K = 8/(2d) <x, x'> ... = 4/d <x, x'>
    assert kp.margin == pytest.approx(max_margin.max_l2_margin(ds.X_train, ds.y_train).margin * 2 / np.sqrt(300))


@pytest.mark.parametrize("loss,out", [("logistic", 1), ("cross_entropy", 3), ("squared", 1)])
def test_kernel_predictor_solves_k1_or_k2_in_explicit_feature_space(rng, loss, out):
    """Against cvxpy on the explicit Jacobian features (an MLP with a zero last layer: Assumption 3.2)."""
    config = relu_mlp.Config(D=4, h=6, out=out, zero_last_layer=False)
    params0 = relu_mlp.init(config, rng)
    X = rng.standard_normal((7, 4))
    y = {"logistic": np.sign(X[:, 0] + 0.1), "cross_entropy": rng.integers(0, 3, 7),
         "squared": rng.standard_normal((7, 1))}[loss]
    kp = kernel_predictors.kernel_predictor(relu_mlp, config, params0, X, y, loss)
    J = relu_mlp.ntk_features(config, params0, X).reshape(7 * out, -1)
    D = ntk.constraint_matrix("binary" if loss == "logistic" else
                              "multiclass" if out > 1 else "regression", y, out).toarray()
    h = cp.Variable(J.shape[1])
    cons = [D @ J @ h == np.ravel(y)] if loss == "squared" else [D @ J @ h >= 1]
    cp.Problem(cp.Minimize(cp.sum_squares(h)), cons).solve(solver="CLARABEL")
    np.testing.assert_allclose(flatten(kp.h), h.value, atol=1e-5)
    f = kp.predict(relu_mlp, config, X).ravel()
    assert np.allclose(f, np.ravel(y)) if loss == "squared" else np.min(D @ f) >= 1 - 1e-9


def test_kkt_residual_vanishes_at_the_max_l1_margin_point_and_not_elsewhere(rng):
    """R1 for the L = 2 diagonal net: (u, v) = (sqrt(w+), sqrt(w-)) of the LP solution is a KKT point."""
    ds = data.sparse_linear_classification(rng, d=60, n_train=30, n_test=5, k=3)
    w = max_margin.max_l1_margin(ds.X_train, ds.y_train).w
    w[np.abs(w) < 1e-9 * np.abs(w).max()] = 0  # LP round-off would become sqrt(1e-12) = 1e-6 in u
    config = diagonal_net.Config(d=60, alpha=1.0)
    at_kkt = {"u": np.sqrt(np.maximum(w, 0)), "v": np.sqrt(np.maximum(-w, 0))}
    r = kkt.kkt_residual(diagonal_net, config, at_kkt, ds.X_train, ds.y_train, "logistic")
    assert r.stationarity < 1e-8 and abs(r.slackness) < 1e-8
    scaled = {k: 7.0 * p for k, p in at_kkt.items()}  # R1's residual is scale-invariant
    assert kkt.kkt_residual(diagonal_net, config, scaled, ds.X_train, ds.y_train, "logistic").stationarity < 1e-8
    perturbed = {k: p + 0.05 * rng.random(p.shape) for k, p in at_kkt.items()}
    assert kkt.kkt_residual(diagonal_net, config, perturbed, ds.X_train, ds.y_train, "logistic").stationarity > 1e-3


def test_kkt_residual_vanishes_at_the_min_nuclear_norm_factorization(rng):
    """R2 for the factorization: U, V from the eigen-split of the min-nuclear-norm completion."""
    ds = data.multiplication_table(rng, d=8, train_fraction=0.6)
    W = min_norm.nuclear_norm_completion(8, ds.X_train, ds.y_train).W
    s, Q = np.linalg.eigh(W)
    s[np.abs(s) < 1e-7 * np.abs(s).max()] = 0
    U, V = Q * np.sqrt(np.maximum(s, 0)), Q * np.sqrt(np.maximum(-s, 0))
    config = matrix_factorization.Config(d=8, alpha=1.0)
    r = kkt.kkt_residual(matrix_factorization, config, {"U": U, "V": V}, ds.X_train, ds.y_train, "squared")
    assert r.problem == "R2" and r.stationarity < 1e-6 and r.slackness < 1e-6
    r = kkt.kkt_residual(matrix_factorization, config, {"U": U + 0.1, "V": V}, ds.X_train, ds.y_train, "squared")
    assert max(r.stationarity, r.slackness) > 1e-3  # here stationarity holds but feasibility fails


def test_kkt_r1_rejects_a_non_separating_theta(rng):
    config = diagonal_net.Config(d=3, alpha=1.0)
    with pytest.raises(errors.ConfigError, match="does not classify"):
        kkt.kkt_residual(diagonal_net, config, diagonal_net.init(config), np.eye(3), np.ones(3), "logistic")


@pytest.mark.parametrize("model, loss", [(matrix_factorization, "squared"), (diagonal_net, "logistic")])
def test_kkt_residual_rejects_theta_zero(model, loss):
    """0/0 would be a silent NaN: theta = 0 has no direction, for R2 as for R1."""
    config = model.Config(d=3, alpha=1.0)
    zero = {k: np.zeros_like(v) for k, v in model.init(config, np.random.default_rng(0)).items()}
    X, y = (np.array([[0, 1], [2, 0]]), np.array([1.0, 2.0])) if loss == "squared" else (np.eye(3), np.ones(3))
    with pytest.raises(errors.ConfigError, match="no direction"):
        kkt.kkt_residual(model, config, zero, X, y, loss)


def test_linearized_gd_closed_form_equals_the_explicit_recursion(rng):
    """beta_{s+1} = ((1 - lr wd) I - (2 lr / n) K) beta_s + (2 lr / n) y, iterated by hand."""
    config = diagonal_net.Config(d=6, alpha=3.0)
    params0 = diagonal_net.init(config)
    X, Xt, y = rng.standard_normal((5, 6)), rng.standard_normal((4, 6)), rng.standard_normal(5)
    lr, wd = 0.05, 0.1
    f, ft = kernel_predictors.linearized_gd(diagonal_net, config, params0, X, y, lr=lr, wd=wd,
                                            steps=[0, 1, 7, 50], X_test=Xt)
    J, Jt = diagonal_net.ntk_features(config, params0, X), diagonal_net.ntk_features(config, params0, Xt)
    delta, theta0, got = np.zeros(12), flatten(params0), {}
    for s in range(51):
        got[s] = (J @ delta, Jt @ delta)
        delta = delta - lr * ((2 / 5) * J.T @ (J @ delta - y) + wd * (theta0 + delta))
    for row, s in enumerate([0, 1, 7, 50]):
        np.testing.assert_allclose(f[row], got[s][0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ft[row], got[s][1], rtol=1e-10, atol=1e-12)


def test_linearized_gd_rejects_an_unstable_lr_and_a_nonzero_initial_output(rng):
    config = diagonal_net.Config(d=4, alpha=10.0)
    X, y = rng.standard_normal((3, 4)), rng.standard_normal(3)
    with pytest.raises(errors.ConfigError, match="too large"):
        kernel_predictors.linearized_gd(diagonal_net, config, diagonal_net.init(config), X, y, lr=1.0, wd=0.0,
                                        steps=10)
    bad = {"u": np.ones(4), "v": np.zeros(4)}
    with pytest.raises(errors.ConfigError, match="Assumption 3.2"):
        kernel_predictors.linearized_gd(diagonal_net, config, bad, X, y, lr=1e-3, wd=0.0, steps=10)


def test_l1_solutions_come_back_without_simplex_round_off():
    """Regression: 60 of 63 non-zeros of the fig1a-quick max-L1-margin solution were round-off below 1.4e-13,
    and the KKT residual at the mapped point was 5.7e-7. The returned support is now the true one (the
    planted k = 3 coordinates) and the KKT identity holds to rounding on what the API returns."""
    from dichotomy.experiments import presets
    from dichotomy.refimpl import diagonal_net
    from dichotomy.refimpl.limits import kkt, max_margin, min_norm
    from dichotomy.refimpl.limits.l1_programs import SUPPORT_TOL

    _, config, _, ds = presets.build(presets.override(presets.get("fig1a-quick"), d=500))
    sol = max_margin.max_l1_margin(ds.X_train, ds.y_train)
    assert np.count_nonzero(sol.w) == 3 and set(np.flatnonzero(sol.w)) == {0, 1, 2}
    assert np.all(np.abs(sol.w[sol.w != 0]) > SUPPORT_TOL * np.abs(sol.w).max())
    u, v = np.sqrt(np.maximum(sol.w, 0)), np.sqrt(np.maximum(-sol.w, 0))
    r = kkt.kkt_residual(diagonal_net, config, {"u": u, "v": v}, ds.X_train, ds.y_train, "logistic")
    assert r.stationarity < 1e-12 and r.slackness < 1e-12
    y = ds.X_train.astype(float) @ sol.w  # targets a sparse w interpolates exactly
    interp = min_norm.min_l1_interpolation(ds.X_train, y)
    assert np.count_nonzero(interp.w) <= len(y)
    np.testing.assert_allclose(ds.X_train.astype(float) @ interp.w, y, rtol=0, atol=1e-12)
