"""Bad input to the public entry points of refimpl.limits: a one-line ConfigError before any solver runs, never a
traceback from NumPy/SciPy/a solver, a process abort (SciPy's NNLS on an empty problem), a Rust panic (Clarabel),
a silent NaN or a silently wrong number."""

import math

import numpy as np
import pytest

from dichotomy import errors
from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp
from dichotomy.refimpl.limits import kernel_predictors, kkt, l1_programs, max_margin, min_norm, predictors, qp

X = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
Y_BIN, Y_REG = np.array([1, -1, 1, 1]), np.array([1.0, 2, 3, 4])
DN = diagonal_net.Config(d=3, alpha=3.0)
P_DN = diagonal_net.init(DN)
MLP = relu_mlp.Config(D=3, h=5, out=3)
P_MLP = relu_mlp.init(MLP, np.random.default_rng(0))
MF = matrix_factorization.Config(d=3, alpha=1.0)
P_MF = matrix_factorization.init(MF, np.random.default_rng(0))
PAIRS = np.array([[0, 1], [2, 0]])
NAN, INF = math.nan, math.inf


def _with(params, key, value):
    return {**params, key: value}


def lgd(y=Y_REG, **kw):
    """linearized_gd on the diagonal net with valid arguments, those given overriding them."""
    kw = {"lr": 0.01, "wd": 0.0, "steps": [3]} | kw
    return lambda: kernel_predictors.linearized_gd(diagonal_net, DN, P_DN, X, y, **kw)


def kernel(module=diagonal_net, config=DN, params=P_DN, Xs=X, y=Y_BIN, loss="logistic"):
    return lambda: kernel_predictors.kernel_predictor(module, config, params, Xs, y, loss)


def kkt_of(module=diagonal_net, config=DN, params=P_DN, Xs=X, y=Y_BIN, loss="logistic"):
    return lambda: kkt.kkt_residual(module, config, params, Xs, y, loss)


CASES = {
    # 1. complex data: refused, not cast to real with a ComplexWarning
    "max_l1_margin complex X": (lambda: max_margin.max_l1_margin(X + 1j, Y_BIN), "complex"),
    "max_l2_margin complex X": (lambda: max_margin.max_l2_margin(X + 1j, Y_BIN), "complex"),
    "min_l1_interpolation complex X": (lambda: min_norm.min_l1_interpolation(X + 1j, Y_REG), "complex"),
    "nuclear_norm_completion complex y": (lambda: min_norm.nuclear_norm_completion(3, PAIRS, [1 + 1j, 2]),
                                          "complex"),
    "hard_margin complex G": (lambda: qp.hard_margin(np.eye(2) + 1j), "real numbers"),
    # 2. linearized_gd: lr, wd, steps, NaN targets, bad params
    "linearized_gd lr nan": (lgd(lr=NAN), r"lr must be a finite number > 0"),
    "linearized_gd lr 0": (lgd(lr=0.0), r"lr must be a finite number > 0"),
    "linearized_gd lr < 0": (lgd(lr=-0.1), r"lr must be a finite number > 0"),
    "linearized_gd wd nan": (lgd(wd=NAN), r"wd must be a finite number >= 0"),
    "linearized_gd wd < 0": (lgd(wd=-0.1), r"wd must be a finite number >= 0"),
    "linearized_gd y nan": (lgd(y=Y_REG * NAN), "finite targets"),
    "linearized_gd steps < 0": (lgd(steps=[-5]), r"steps must be an integer >= 0, got -5"),
    "linearized_gd steps 2.5": (lgd(steps=[2.5]), r"steps must be an integer >= 0, got 2.5"),
    "linearized_gd steps 10**30": (lgd(steps=[0, 10**30]), r"steps=10{30} is more than 1e\+15 steps"),
    "linearized_gd steps nan": (lgd(steps=np.array([1.0, NAN])), r"steps must be an integer >= 0, got nan"),
    # 3. predicted_time: lr finite > 0, wd finite >= 0
    "predicted_time lr < 0": (lambda: predictors.predicted_time(diagonal_net, DN, -0.1, 0.1), "lr must be a finite"),
    "predicted_time lr nan": (lambda: predictors.predicted_time(diagonal_net, DN, NAN, 0.1), "lr must be a finite"),
    "predicted_time wd < 0": (lambda: predictors.predicted_time(diagonal_net, DN, 0.1, -0.1), "wd must be a finite"),
    "predicted_time wd nan": (lambda: predictors.predicted_time(diagonal_net, DN, 0.1, NAN), "wd must be a finite"),
    # 4. kkt_residual: targets, params, labels
    "kkt squared y nan": (kkt_of(matrix_factorization, MF, P_MF, PAIRS, [1.0, NAN], "squared"), "finite targets"),
    "kkt params nan": (kkt_of(params=_with(P_DN, "u", P_DN["u"] * NAN)), r"params\['u'\] contains NaN or inf"),
    "kkt params inf": (kkt_of(params=_with(P_DN, "v", P_DN["v"] * INF)), r"params\['v'\] contains NaN or inf"),
    "kkt y wrong length": (kkt_of(y=Y_BIN[:3]), "4 outputs but 3 targets"),
    # malformed params are reported as such, also where they are 0 (before: "theta = 0 has no direction")
    "kkt params missing key": (kkt_of(params={"u": np.zeros(3)}), "missing v"),
    "kkt params wrong shape": (kkt_of(params={"u": np.zeros(2), "v": np.zeros(3)}), r"params\['u'\] has shape \(2,\)"),
    # 5. distance: task and shapes
    "distance unknown task": (lambda: predictors.distance(np.zeros((2, 3)), np.zeros(3), "nope"),
                              "unknown task 'nope'"),
    "distance shape mismatch": (lambda: predictors.distance(np.ones((2, 3)), np.ones(4), "binary"), "do not match"),
    # 6.-8. empty problems, refused before SciPy's NNLS (process abort), Clarabel (Rust panic) or HiGHS
    "max_l2_margin no rows": (lambda: max_margin.max_l2_margin(np.zeros((0, 3)), np.zeros(0)), "empty"),
    "hard_margin 0 x 0": (lambda: qp.hard_margin(np.zeros((0, 0))), "empty"),
    "nonnegative_fit 0 x 0": (lambda: qp.nonnegative_fit(np.zeros((0, 0)), np.zeros(0)), "empty"),
    "nuclear_norm_completion no pairs": (lambda: min_norm.nuclear_norm_completion(4, np.zeros((0, 2), int),
                                                                                  np.zeros(0)), "no observed entries"),
    "max_l1_margin no rows": (lambda: max_margin.max_l1_margin(np.zeros((0, 3)), np.zeros(0)), "empty"),
    "max_l1_margin no columns": (lambda: max_margin.max_l1_margin(np.zeros((2, 0)), np.ones(2)), "empty"),
    "min_l1_interpolation no rows": (lambda: min_norm.min_l1_interpolation(np.zeros((0, 3)), np.zeros(0)), "empty"),
    "min_l1 no rows": (lambda: l1_programs.min_l1(np.zeros((0, 3)), np.zeros(0), equality=True), "empty"),
    "kernel_predictor no rows": (kernel(Xs=np.zeros((0, 3)), y=np.zeros(0)), "X has no rows"),
    # 9. kernel_predictor: targets, params, labels
    "kernel y wrong length": (kernel(y=Y_BIN[:3]), "4 outputs but 3 targets"),
    "kernel squared y nan": (kernel(y=Y_REG * NAN, loss="squared"), "finite targets"),
    "kernel params missing key": (kernel(params={"u": P_DN["u"]}), "missing v"),
    "kernel params wrong shape": (kernel(params=_with(P_DN, "u", P_DN["u"][:2])), r"params\['u'\] has shape"),
}
# cross-entropy labels out of range, negative or fractional, for both entry points that take labels
CASES.update({f"{name} labels {what}": (entry(relu_mlp, MLP, P_MLP, X, np.array(labels), "cross_entropy"),
                                        r"integer class labels in \[0, 3\)")
              for name, entry in (("kkt", kkt_of), ("kernel", kernel))
              for what, labels in (("out of range", [0, 1, 5, 1]), ("negative", [0, 1, -1, 1]),
                                   ("float", [0, 1, 1.5, 1]))})


@pytest.mark.parametrize("call, match", CASES.values(), ids=CASES.keys())
def test_bad_input_is_a_one_line_config_error(call, match):
    with pytest.raises(errors.ConfigError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_linearized_gd_with_a_singular_kernel_and_no_weight_decay_is_not_called_unstable():
    """n > d: K has a null space, where rho = 1 exactly with wd = 0. That is stable (the mode is never excited);
    before, |rho| >= 1 there reported any lr as "too large". Only rho <= -1 is."""
    rng = np.random.default_rng(1)
    Xs, y = rng.standard_normal((6, 3)), rng.standard_normal(6)
    f, _ = kernel_predictors.linearized_gd(diagonal_net, DN, P_DN, Xs, y, lr=0.01, wd=0.0, steps=[0, 5])
    assert np.all(np.isfinite(f)) and np.all(f[0] == 0)
    with pytest.raises(errors.ConfigError, match="too large"):
        kernel_predictors.linearized_gd(diagonal_net, DN, P_DN, Xs, y, lr=10.0, wd=0.0, steps=[5])
