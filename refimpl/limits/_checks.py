"""Input checks shared by several entry points of :mod:`refimpl.limits`, each made once, before any solver runs.

Every check raises a one-line :class:`~refimpl.errors.ConfigError` saying what is wrong and what to do.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from dichotomy.refimpl import models


def model_data(module: ModuleType, config, params, X, y, loss: str,
               ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(params as float64 copies, X, y) after checking them for ``module``: params against ``shapes(config)``
    (:func:`refimpl.models.check_params`), X by the model's ``check_inputs`` with at least one row, y against
    ``loss`` and the model's outputs (n,) or (n, out) (:func:`refimpl.models.check_examples`)."""
    params = models.check_params(module, config, params)
    X, y = models.check_examples(module, config, params, X, y, loss,
                                 empty="X has no rows: the limits need at least one training example")
    return params, X, y
