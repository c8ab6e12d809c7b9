"""The paper's datasets, drawn from an explicit ``np.random.Generator`` (docs/math.md §6).

Every generator returns a :class:`Dataset`: train and test inputs and targets, the loss that goes with
them, and ``info`` (the generator's name and arguments, JSON-serializable, saved with every trajectory).
Train sizes are ``floor(train_fraction * N)``, which gives the official code's 3763 for modular addition
(p = 97, 40%) and 470 for the multiplication table (d = 97, 5%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dichotomy import errors
from dichotomy.refimpl import checks
from dichotomy.refimpl.losses import task_of


@dataclass(frozen=True)
class Dataset:
    """Train/test split plus the loss it is trained with.

    Attributes
    ----------
    X_train, X_test : ndarray, shape (n, D) or (n, 2) for index pairs
    y_train, y_test : ndarray, shape (n,)
    loss : str
        Name of the loss in :mod:`refimpl.losses`.
    info : dict
        Generator name and arguments; JSON-serializable.
    truth : dict, optional
        What drew the data, where the population is known in closed form (:func:`population_accuracy`):
        ``{"w_star": (d,) unit vector, "gamma": float}`` for :func:`l2_separated_gaussians`.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    loss: str
    info: dict = field(default_factory=dict)
    truth: dict | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        # Lists (or any array-likes) become arrays once, here, so every engine and loss can rely on .dtype and
        # .shape; np.asarray leaves an array as it is (no copy). The arrays' contents are checked by train.check_run.
        for name in ("X_train", "y_train", "X_test", "y_test"):
            object.__setattr__(self, name, np.asarray(getattr(self, name)))

    @property
    def task(self) -> str:
        return task_of(self.loss)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise errors.ConfigError("datasets are drawn from an explicit rng: pass np.random.default_rng(seed)")
    return rng


def _split(rng, N: int, train_fraction: float):
    n_train = math.floor(checks.fraction("train_fraction", train_fraction) * N)
    if not 1 <= n_train < N:
        raise errors.ConfigError(f"train_fraction={train_fraction} leaves no train or no test example of {N}")
    perm = rng.permutation(N)
    return perm[:n_train], perm[n_train:]


def sparse_linear_classification(rng, *, d: int, n_train: int, n_test: int, k: int = 3) -> Dataset:
    """x uniform on {-1, +1}^d; y = sign(<w*, x>) with w* in {-1, +1}^k on the first k coordinates, 0 after.

    k must be odd so that no label is a tie (the label is a signed majority vote). X is int8 (exact),
    shape (n, d); y is float64 in {-1, +1}. Paper: d = 1e5, n_train = 256, k = 3 (App. E.2).
    """
    rng = _check_rng(rng)
    d, n_train, n_test, k = (checks.positive_int(a, b) for a, b in
                             (("d", d), ("n_train", n_train), ("n_test", n_test), ("k", k)))
    if k % 2 == 0:
        raise errors.ConfigError(f"k must be odd so that the majority label has no ties, got k={k}")
    if k > d:
        raise errors.ConfigError(f"k={k} relevant coordinates do not fit in d={d}")
    w_star = rng.choice(np.array([-1, 1], dtype=np.int8), size=k)

    def draw(n):
        X = (2 * rng.integers(0, 2, size=(n, d), dtype=np.int8) - 1).astype(np.int8)
        return X, np.sign(X[:, :k].astype(np.int64) @ w_star).astype(np.float64)

    (Xtr, ytr), (Xte, yte) = draw(n_train), draw(n_test)
    info = {"generator": "sparse_linear_classification", "d": d, "n_train": n_train, "n_test": n_test,
            "k": k, "w_star": w_star.tolist()}
    return Dataset(Xtr, ytr, Xte, yte, "logistic", info)


def l2_separated_gaussians(rng, *, d: int, n_train: int, n_test: int, gamma: float = 25.0) -> Dataset:
    """Misgrokking data: z ~ N(0, I_d), s = sign<z, w*>, x = z + (gamma/2) s w*, y = s; w* a random unit vector.

    The classes are separated by an L2 margin gamma in the direction of a dense w*, which favours the
    early (L2-margin) bias over the late (L1-margin) one. Paper: gamma = 25, n_train = 32.
    """
    rng = _check_rng(rng)
    d, n_train, n_test = (checks.positive_int(a, b) for a, b in
                          (("d", d), ("n_train", n_train), ("n_test", n_test)))
    gamma = checks.positive("gamma", gamma, allow_zero=True)
    w_star = rng.standard_normal(d)
    w_star /= np.linalg.norm(w_star)

    def draw(n):
        z = rng.standard_normal((n, d))
        s = np.where(z @ w_star >= 0, 1.0, -1.0)
        return z + (gamma / 2) * s[:, None] * w_star, s

    (Xtr, ytr), (Xte, yte) = draw(n_train), draw(n_test)
    info = {"generator": "l2_separated_gaussians", "d": d, "n_train": n_train, "n_test": n_test,
            "gamma": gamma}
    return Dataset(Xtr, ytr, Xte, yte, "logistic", info, truth={"w_star": w_star, "gamma": gamma})


def population_accuracy(dataset: Dataset, w: np.ndarray) -> float:
    """The exact accuracy of the linear classifier sign<w, x> on the population that drew ``dataset``.

    For :func:`l2_separated_gaussians` (x = z + (gamma/2) s w*, s = sign<z, w*>, ||w*|| = 1), write
    rho = <w, w*> / ||w|| and g1 = <z, w*> ~ N(0, 1). Then s <w, x> / ||w|| = rho (|g1| + gamma/2) + sqrt(1 - rho^2) g2
    with g2 ~ N(0, 1) independent of |g1|, so

        accuracy = E_{|g1|} Phi( rho (|g1| + gamma/2) / sqrt(1 - rho^2) ),

    a one-dimensional integral over the half-normal |g1| (docs/math.md §6). This replaces a test set of 1e4 x 1e5
    float64 (8 GB) at Fig. 1b's scale, with no sampling error. ``w = 0`` ties on every input, and a tie counts ½, as
    in :func:`refimpl.metrics.accuracy`; any other w ties with probability 0.
    """
    truth = dataset.truth
    if not truth or "w_star" not in truth:
        raise errors.ConfigError(f"the population of {dataset.info.get('generator', 'this dataset')!r} is not known in "
                                 "closed form; use its test set")
    w = np.asarray(w, np.float64)
    w_star = truth["w_star"]
    if w.shape != w_star.shape:
        raise errors.ConfigError(f"w must have shape {w_star.shape}, got {w.shape}")
    norm = float(np.linalg.norm(w))
    if norm == 0 or not math.isfinite(norm):
        return 0.5 if norm == 0 else math.nan
    rho = min(1.0, max(-1.0, float(w @ w_star) / norm))
    c, side = truth["gamma"] / 2, math.sqrt(max(0.0, 1 - rho * rho))
    if side == 0:
        return 1.0 if rho > 0 else 0.0
    from scipy import integrate, special

    half_normal = lambda g: math.sqrt(2 / math.pi) * math.exp(-g * g / 2)  # noqa: E731
    value = integrate.quad(lambda g: half_normal(g) * special.ndtr(rho * (g + c) / side), 0, math.inf,
                           epsabs=1e-13, epsrel=1e-12)[0]
    return float(min(1.0, max(0.0, value)))


def multiplication_table(rng, *, d: int = 97, train_fraction: float = 0.05) -> Dataset:
    """Matrix completion of X*_ij = i j / d^2 (i, j = 0..d-1), rank 1; a random fraction of entries observed.

    Inputs are index pairs (n, 2) int64; targets X*_ij. As in the official code, the test set is every
    unobserved entry, including those whose transpose is observed. Paper: d = 97, 5% (470 entries).
    """
    rng = _check_rng(rng)
    d = checks.positive_int("d", d, minimum=2)
    v = np.arange(d) / d
    M = np.outer(v, v)
    train, test = _split(rng, d * d, train_fraction)
    pairs = lambda idx: np.stack(np.divmod(idx, d), axis=1).astype(np.int64)  # noqa: E731
    info = {"generator": "multiplication_table", "d": d, "train_fraction": train_fraction}
    return Dataset(pairs(train), M.ravel()[train], pairs(test), M.ravel()[test], "squared", info)


def _modular_table(p: int, op: str):
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if op == "+":
        return a, b, (a + b) % p
    if op == "-":
        return a, b, (a - b) % p
    if op == "*":
        return a, b, (a * b) % p
    if op == "/":
        if any(p % q == 0 for q in range(2, math.isqrt(p) + 1)):
            raise errors.ConfigError(f"division mod p needs p prime so every b != 0 is invertible; p={p}")
        a, b = a[b != 0], b[b != 0]
        return a, b, (a * np.array([pow(int(x), -1, p) for x in b])) % p
    raise errors.ConfigError(f"unknown operation {op!r}; choose one of '+', '-', '*', '/'")


def two_hot(a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    """Concatenated one-hot encodings [e_a, e_b] of shape (n, 2p), float64; a and b are integers in [0, p)."""
    p = checks.positive_int("p", p)
    a, b = np.asarray(a), np.asarray(b)
    for name, v in (("a", a), ("b", b)):
        if v.dtype.kind not in "iu" or v.ndim != 1:
            raise errors.ConfigError(f"two_hot needs 1-dimensional integer operands, got {name} of shape {v.shape} "
                                     f"dtype {v.dtype}")
        if v.size and (v.min() < 0 or v.max() >= p):
            raise errors.ConfigError(f"two_hot operands must lie in [0, p={p}), got {name} in [{v.min()}, {v.max()}]")
    if a.size != b.size:
        raise errors.ConfigError(f"two_hot needs as many a as b, got {a.size} and {b.size}")
    X = np.zeros((a.size, 2 * p))
    X[np.arange(a.size), a] = 1.0
    X[np.arange(a.size), p + b] = 1.0
    return X


def modular_arithmetic(rng, *, p: int = 97, op: str = "+", train_fraction: float = 0.4) -> Dataset:
    """All equations a op b = c (mod p), split at random; inputs two-hot [e_a, e_b] (n, 2p), labels c.

    ``op`` is ``+``, ``-``, ``*`` or ``/`` (b != 0, p prime). The operands are the argmax of the first p
    and of the last p columns of X, which is how a gather kernel reads them back.
    Paper: p = 97, +, 40% train (3763 equations).
    """
    rng = _check_rng(rng)
    p = checks.positive_int("p", p, minimum=2)
    a, b, c = _modular_table(p, op)
    train, test = _split(rng, a.size, train_fraction)
    info = {"generator": "modular_arithmetic", "p": p, "op": op, "train_fraction": train_fraction}
    return Dataset(two_hot(a[train], b[train], p), c[train], two_hot(a[test], b[test], p), c[test],
                   "cross_entropy", info)


GENERATORS = {
    "sparse_linear_classification": sparse_linear_classification,
    "l2_separated_gaussians": l2_separated_gaussians,
    "multiplication_table": multiplication_table,
    "modular_arithmetic": modular_arithmetic,
}


def make(generator: str, seed: int, **kwargs) -> Dataset:
    """Draw dataset ``generator`` with ``np.random.default_rng(seed)``.

    ``seed`` is an integer >= 0; ``kwargs`` are the generator's arguments.
    """
    if generator not in GENERATORS:
        raise errors.ConfigError(f"unknown dataset {generator!r}; choose one of {sorted(GENERATORS)}")
    seed = checks.positive_int("seed", seed, minimum=0)
    try:
        return GENERATORS[generator](np.random.default_rng(seed), **kwargs)
    except TypeError as e:  # an unknown keyword: say which generator and what it takes
        raise errors.ConfigError(f"{generator}: {e}") from None
