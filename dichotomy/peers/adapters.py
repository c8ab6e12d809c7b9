"""Built-in cross-check adapters: the three models in PyTorch and in JAX, as their users would write them.

PyTorch: ``nn.Module``s with this package's parameter names (``u``/``v``, ``U``/``V``, ``W1``/``b1``/``W2``...),
autograd, and ``torch.optim.SGD(lr, weight_decay=wd)``, like the official code. JAX: pure functions,
``jax.grad``, x64. Both are imported lazily (the ``peers`` extra); a missing framework raises
:class:`kernels.BackendUnavailable`. An adapter exposes NumPy-in, NumPy-out ``forward``, ``loss_and_grad``
and ``make_step`` for :func:`dichotomy.peers.crosscheck.crosscheck`.

The keyword ``mistake`` builds a deliberately wrong adapter (``decoupled``, ``sum``, ``float32``,
``half-mse``), the slips the cross-check is meant to catch (docs/crosscheck.md).
"""

from __future__ import annotations

import numpy as np

from dichotomy.kernels import BackendUnavailable
from dichotomy.refimpl import diagonal_net, matrix_factorization, relu_mlp

MISTAKES = ("decoupled", "sum", "float32", "half-mse")


def import_torch():
    """``import torch``, or BackendUnavailable naming the extra to install."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailable('PyTorch is not installed: pip install "dichotomy-grokking[peers]" (in a checkout: '
                                 'pip install ".[peers]")') from None
    return torch


def import_jax():
    """``import jax`` with float64 enabled, or BackendUnavailable naming the extra to install."""
    try:
        import jax
    except ImportError:
        raise BackendUnavailable('JAX is not installed: pip install "dichotomy-grokking[peers]" (in a checkout: '
                                 'pip install ".[peers]")') from None
    jax.config.update("jax_enable_x64", True)
    return jax


def _diagonal_net(xp, relu, L, P, X):
    return X @ (P["u"] ** L - P["v"] ** L)


def _matrix_completion(xp, relu, L, P, X):
    i, j = X[:, 0], X[:, 1]
    return (P["U"][i] * P["U"][j]).sum(1) - (P["V"][i] * P["V"][j]).sum(1)


def _relu_mlp(xp, relu, L, P, X):
    a = relu(X @ P["W1"].T + P["b1"])
    for layer in range(2, L):
        a = relu(a @ P[f"W{layer}"].T)
    return a @ P[f"W{L}"].T


# The peers' forward passes, as their users would write them, by model NAME (refimpl.models).
FORWARDS = {diagonal_net.NAME: _diagonal_net, matrix_factorization.NAME: _matrix_completion,
            relu_mlp.NAME: _relu_mlp}


def outputs(xp, relu, model: str, L: int, P: dict, X):
    """f(theta; X) of model ``model`` (a NAME) in any array library ``xp`` (torch or jax.numpy)."""
    return FORWARDS[model](xp, relu, L, P, X)


def torch_loss(torch, loss: str, f, y, reduction: str = "mean"):
    """The losses as PyTorch users write them (mean reduction unless told)."""
    F = torch.nn.functional
    if loss == "logistic":
        per = F.softplus(-y * f)
    elif loss == "exponential":
        per = torch.exp(-y * f)
    elif loss == "squared":
        return F.mse_loss(f, y, reduction=reduction)
    else:
        return F.cross_entropy(f, y, reduction=reduction)
    return per.sum() if reduction == "sum" else per.mean()


def jax_loss(jax, loss: str, f, y):
    """The losses in JAX, mean reduction."""
    jnp = jax.numpy
    if loss == "logistic":
        return jnp.mean(jax.nn.softplus(-y * f))
    if loss == "exponential":
        return jnp.mean(jnp.exp(-y * f))
    if loss == "squared":
        return jnp.mean((f - y) ** 2)
    return jnp.mean(jax.nn.logsumexp(f, axis=1) - jnp.take_along_axis(f, y[:, None], 1)[:, 0])


class _Adapter:
    """What both adapters record: the model's kind and depth, the loss, and the deliberate mistake (if any)."""

    def __init__(self, module, config, loss: str, mistake: str | None = None):
        if mistake is not None and mistake not in MISTAKES:
            raise BackendUnavailable(f"unknown mistake {mistake!r}; choose one of {', '.join(MISTAKES)}")
        self.kind, self.L, self.loss, self.mistake = module.NAME, module.degree(config), loss, mistake
        self.indices = module.INPUTS == "index-pairs"


class TorchAdapter(_Adapter):
    """PyTorch: an nn.Module holding the parameters, autograd, torch.optim.SGD (coupled weight decay)."""

    framework = "torch"

    def __init__(self, module, config, loss: str, mistake: str | None = None):
        super().__init__(module, config, loss, mistake)
        self.torch = import_torch()
        self.dtype = self.torch.float32 if mistake == "float32" else self.torch.float64

    def _module(self, params):
        torch = self.torch
        adapter = self

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.P = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(v, dtype=adapter.dtype))
                                                 for k, v in params.items()})

            def forward(self, X):
                return outputs(torch, torch.relu, adapter.kind, adapter.L, self.P, X)

        return Model()

    def _tensors(self, X, y):
        torch = self.torch
        X = torch.tensor(X, dtype=torch.int64 if self.indices else self.dtype)
        y = torch.tensor(y, dtype=torch.int64 if self.loss == "cross_entropy" else self.dtype)
        return X, y

    def _objective(self, model, X, y):
        value = torch_loss(self.torch, self.loss, model(X), y, "sum" if self.mistake == "sum" else "mean")
        return 0.5 * value if self.mistake == "half-mse" else value

    def forward(self, params, X):
        with self.torch.no_grad():
            return self._module(params)(self._tensors(X, np.zeros(1))[0]).numpy()

    def loss_and_grad(self, params, X, y):
        model = self._module(params)
        value = self._objective(model, *self._tensors(X, y))
        value.backward()
        return float(value.detach()), {k: p.grad.numpy().copy() for k, p in model.P.items()}

    def make_step(self, X, y, lr: float, wd: float):
        """One optimizer step, params dict -> params dict (SGD with weight_decay=wd, or the mistake)."""
        torch = self.torch
        X, y = self._tensors(X, y)

        def step(params):
            model = self._module(params)
            decoupled = self.mistake == "decoupled"
            opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=0.0 if decoupled else wd)
            opt.zero_grad()
            self._objective(model, X, y).backward()
            if decoupled:
                with torch.no_grad():
                    for p in model.parameters():
                        p.mul_(1.0 - wd)
            opt.step()
            return {k: p.detach().numpy().copy() for k, p in model.P.items()}

        return step


class JaxAdapter(_Adapter):
    """JAX: pure functions, jax.grad, x64, and p <- p - lr (g + wd p) as an optax-style update."""

    framework = "jax"

    def __init__(self, module, config, loss: str, mistake: str | None = None):
        super().__init__(module, config, loss, mistake)
        self.jax = import_jax()
        self.dtype = self.jax.numpy.float32 if mistake == "float32" else self.jax.numpy.float64

    def _objective(self, P, X, y):
        jax = self.jax
        value = jax_loss(jax, self.loss, outputs(jax.numpy, jax.nn.relu, self.kind, self.L, P, X), y)
        if self.mistake == "sum":
            value = value * X.shape[0]
        return 0.5 * value if self.mistake == "half-mse" else value

    def _arrays(self, params, X, y):
        jnp = self.jax.numpy
        P = {k: jnp.asarray(v, dtype=self.dtype) for k, v in params.items()}
        X = jnp.asarray(X) if self.indices else jnp.asarray(X, dtype=self.dtype)
        y = jnp.asarray(y) if self.loss == "cross_entropy" else jnp.asarray(y, dtype=self.dtype)
        return P, X, y

    def forward(self, params, X):
        P, X, _ = self._arrays(params, X, np.zeros(1))
        return np.asarray(outputs(self.jax.numpy, self.jax.nn.relu, self.kind, self.L, P, X))

    def loss_and_grad(self, params, X, y):
        value, grads = self.jax.value_and_grad(self._objective)(*self._arrays(params, X, y))
        return float(value), {k: np.asarray(v) for k, v in grads.items()}

    def make_step(self, X, y, lr: float, wd: float):
        jax = self.jax
        grad = jax.jit(jax.grad(self._objective))

        def step(params):
            P, Xj, yj = self._arrays(params, X, y)
            g = grad(P, Xj, yj)
            if self.mistake == "decoupled":
                new = {k: (1.0 - wd) * p - lr * g[k] for k, p in P.items()}
            else:
                new = {k: p - lr * (g[k] + wd * p) for k, p in P.items()}
            return {k: np.asarray(v) for k, v in new.items()}

        return step


ADAPTERS = {"torch": TorchAdapter, "jax": JaxAdapter}


def adapter(framework: str, module, config, loss: str, mistake: str | None = None):
    """The built-in adapter of ``framework`` (torch or jax) for ``module``; BackendUnavailable if missing."""
    if framework not in ADAPTERS:
        raise BackendUnavailable(f"unknown framework {framework!r}; choose one of {', '.join(ADAPTERS)}")
    return ADAPTERS[framework](module, config, loss, mistake)
