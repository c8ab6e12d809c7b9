"""What users would run instead, doing the same float64 GD: PyTorch eager and JAX (the ``peers`` extra).

PyTorch follows the official code: tensors with autograd, ``torch.optim.SGD(lr, weight_decay=wd)``.
JAX: ``jax.grad`` and the same update in one ``jit``-compiled ``lax.fori_loop``, with x64 enabled. Both are
imported lazily; a missing one raises :class:`kernels.BackendUnavailable` naming the extra to install.
Each ``make_*`` returns ``(advance(steps), params())`` over the given float64 initial parameters.
"""

from __future__ import annotations

import numpy as np

from dichotomy.peers.adapters import import_jax, import_torch, jax_loss, outputs, torch_loss


def make_torch(module, params: dict, X: np.ndarray, y: np.ndarray, lr: float, wd: float, loss: str | None = None):
    """PyTorch eager CPU, float64: autograd + torch.optim.SGD (coupled weight decay), one step per call."""
    torch = import_torch()
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    kind, loss = module.NAME, loss or module.STANDARD_LOSS
    Xt = torch.tensor(X, dtype=torch.int64 if module.INPUTS == "index-pairs" else torch.float64)
    yt = torch.tensor(y, dtype=torch.int64 if loss == "cross_entropy" else torch.float64)
    opt = torch.optim.SGD(list(P.values()), lr=lr, weight_decay=wd)

    def advance(steps):
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            torch_loss(torch, loss, outputs(torch, torch.relu, kind, 2, P, Xt), yt).backward()
            opt.step()

    return advance, lambda: {k: v.detach().numpy().copy() for k, v in P.items()}


def make_jax(module, params: dict, X: np.ndarray, y: np.ndarray, lr: float, wd: float, loss: str | None = None):
    """JAX CPU, float64: jax.grad and p <- p - lr (g + wd p) inside one jit-compiled lax.fori_loop."""
    jax = import_jax()
    jnp = jax.numpy
    stem, name = module.NAME, loss or module.STANDARD_LOSS

    def loss(P):
        return jax_loss(jax, name, outputs(jnp, jax.nn.relu, stem, 2, P, X), y)

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
