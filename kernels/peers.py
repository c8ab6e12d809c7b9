"""What users would run instead, doing the same float64 GD: PyTorch eager and JAX (the ``peers`` extra).

PyTorch follows the official code: tensors with autograd, ``torch.optim.SGD(lr, weight_decay=wd)``.
JAX: ``jax.grad`` and the same update in one ``jit``-compiled ``lax.fori_loop``, with x64 enabled. Both are
imported lazily; a missing one raises :class:`kernels.BackendUnavailable` naming the extra to install.
Each ``make_*`` returns ``(advance(steps), params())`` over the given float64 initial parameters.
"""

from __future__ import annotations

import numpy as np

from kernels import BackendUnavailable


def _torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailable('PyTorch is not installed: pip install ".[peers]"') from None
    return torch


def _jax():
    try:
        import jax
    except ImportError:
        raise BackendUnavailable('JAX is not installed: pip install ".[peers]"') from None
    jax.config.update("jax_enable_x64", True)
    return jax


def _torch_outputs(torch, kind, P, X):
    if kind == "diag":
        return X @ (P["u"] ** 2 - P["v"] ** 2)
    if kind == "mc":
        i, j = X[:, 0], X[:, 1]
        return (P["U"][i] * P["U"][j]).sum(1) - (P["V"][i] * P["V"][j]).sum(1)
    return torch.relu(X @ P["W1"].T + P["b1"]) @ P["W2"].T


def _torch_loss(torch, kind, f, y):
    if kind == "diag":
        return torch.nn.functional.softplus(-y * f).mean()
    if kind == "mc":
        return torch.nn.functional.mse_loss(f, y)
    return torch.nn.functional.cross_entropy(f, y)


def make_torch(kind: str, params: dict, X: np.ndarray, y: np.ndarray, lr: float, wd: float):
    """PyTorch eager CPU, float64: autograd + torch.optim.SGD (coupled weight decay), one step per call."""
    torch = _torch()
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    Xt = torch.tensor(X, dtype=torch.int64 if kind == "mc" else torch.float64)
    yt = torch.tensor(y, dtype=torch.int64 if kind == "mlp" else torch.float64)
    opt = torch.optim.SGD(list(P.values()), lr=lr, weight_decay=wd)

    def advance(steps):
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            _torch_loss(torch, kind, _torch_outputs(torch, kind, P, Xt), yt).backward()
            opt.step()

    return advance, lambda: {k: v.detach().numpy().copy() for k, v in P.items()}


def make_jax(kind: str, params: dict, X: np.ndarray, y: np.ndarray, lr: float, wd: float):
    """JAX CPU, float64: jax.grad and p <- p - lr (g + wd p) inside one jit-compiled lax.fori_loop."""
    jax = _jax()
    jnp = jax.numpy

    def loss(P):
        if kind == "diag":
            return jnp.mean(jax.nn.softplus(-y * (X @ (P["u"] ** 2 - P["v"] ** 2))))
        if kind == "mc":
            i, j = X[:, 0], X[:, 1]
            f = (P["U"][i] * P["U"][j]).sum(1) - (P["V"][i] * P["V"][j]).sum(1)
            return jnp.mean((f - y) ** 2)
        logits = jax.nn.relu(X @ P["W1"].T + P["b1"]) @ P["W2"].T
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0])

    grad = jax.grad(loss)

    def body(_, P):
        return jax.tree_util.tree_map(lambda p, g: p - lr * (g + wd * p), P, grad(P))

    run = jax.jit(lambda P, steps: jax.lax.fori_loop(0, steps, body, P))
    X, y = jnp.asarray(X), jnp.asarray(y)
    state = {"P": {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}}

    def advance(steps):
        state["P"] = jax.block_until_ready(run(state["P"], steps))

    return advance, lambda: {k: np.asarray(v) for k, v in state["P"].items()}


PEERS = {"torch": make_torch, "jax": make_jax}
