"""The training objective of every model: the mean loss over a dataset and its gradient, written once."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from dichotomy.refimpl import checks, losses


def loss_and_grad(module: ModuleType, config, params, X, y, loss: str) -> tuple[float, dict[str, np.ndarray]]:
    """Mean loss of model ``module`` over (X, y) and its gradient.

    Parameters
    ----------
    module : model module
        One of :data:`refimpl.models.MODELS`; its ``forward`` and ``backward`` do the work.
    config, params, X, y, loss
        Checked first: params against ``shapes(config)``, X by the model's ``check_inputs``
        (:func:`refimpl.checks.check_call`), y against the loss (:func:`refimpl.losses.check_targets`).

    Returns
    -------
    value : float
        L(theta) = (1/n) sum_i l(f(theta; x_i), y_i).
    grad : dict of ndarray
        dL/dtheta with the keys and shapes of ``params``: one backward pass of dL/df (docs/math.md).
    """
    params, X = checks.check_call(module, config, params, X)
    f, cache = module.forward(config, params, X)
    value, g = losses.value_and_grad(loss, f, losses.check_targets(loss, f.shape, y))
    return value, module.backward(config, params, cache, g)
