"""dichotomy: a reference implementation of the early/late implicit-bias dichotomy (Lyu et al., ICLR 2024).

One import package. Its subpackages live in the repository's top-level folders:

==========================  ===============
import name                 folder
==========================  ===============
``dichotomy.refimpl``       ``refimpl/``     the float64 NumPy oracle: math only
``dichotomy.kernels``       ``kernels/``     the fast engines (Numba, CuPy) and the backend registry
``dichotomy.validation``    ``validation/``  the paper's claims
``dichotomy.run`` ...       ``dichotomy/``   the application: the driver (run), files (store), other
                                             frameworks (peers), experiments, the switch's diagnosis,
                                             plots, the bench and the command (cli)
==========================  ===============

docs/architecture.md draws the layers and says where a new model, engine, stepper, claim or command goes.

An installed copy (``pip install .``) holds the folders under ``dichotomy/`` (setuptools' package-dir mapping,
pyproject.toml). In a source checkout, this package sits beside them instead, so the repository root is added to
its search path: ``python -m pytest`` and ``python -m dichotomy`` work from a checkout, installed or not.
"""

from __future__ import annotations

from pathlib import Path

_here = Path(__file__).resolve().parent
if not (_here / "refimpl").is_dir() and (_here.parent / "refimpl" / "__init__.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821  (a package's __path__ is set by the import system)

from dichotomy import _moved  # noqa: E402  (after __path__ is complete)

_moved.install()  # the old module names of docs/architecture.md's "Moved modules" table, for one more release
