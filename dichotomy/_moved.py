"""The modules the house moved (docs/architecture.md, "Moved modules"), still importable by their old names.

Scripts written against the old layout (``from dichotomy.refimpl import train``) keep working for one more
release, with a DeprecationWarning that names the new home. An old name is an alias of its new module (the same
object: monkeypatching it patches the real one), or, for a module that was split, a module holding the public
names of its parts. Nothing here is imported until an old name is.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old name -> new module(s); a split module lists its parts, the first one named in the warning
MOVED = {
    "dichotomy.refimpl.train": ("dichotomy.run.driver",),
    "dichotomy.refimpl.checkpoint": ("dichotomy.run.checkpoint", "dichotomy.store.keys"),
    "dichotomy.refimpl.trajectory": ("dichotomy.run.trajectory",),
    "dichotomy.refimpl.files": ("dichotomy.store.files",),
    "dichotomy.refimpl.manifest": ("dichotomy.store.manifest",),
    "dichotomy.refimpl.crosscheck": ("dichotomy.peers.crosscheck",),
    "dichotomy.refimpl.presets": ("dichotomy.experiments.presets",),
    "dichotomy.refimpl.errors": ("dichotomy.errors", "dichotomy.refimpl.checks"),
    "dichotomy.refimpl.tree": ("dichotomy.refimpl.checks", "dichotomy.refimpl.params"),
    "dichotomy.refimpl.optim": ("dichotomy.refimpl.steppers",),
    "dichotomy.refimpl.limits.transition": ("dichotomy.diagnosis", "dichotomy.refimpl.limits.predictors"),
    "dichotomy.refimpl.limits._checks": ("dichotomy.refimpl.checks",),
    "dichotomy.kernels.bench": ("dichotomy.bench",),
    "dichotomy.kernels.adapters": ("dichotomy.peers.adapters",),
    "dichotomy.kernels.peers": ("dichotomy.peers.timing",),
    "dichotomy.kernels.dispatch": ("dichotomy.kernels.registry",),
    "dichotomy.kernels.numba.engine": ("dichotomy.kernels.numba.base",),
    "dichotomy.kernels.cupy.modules": ("dichotomy.kernels.cupy.cuda_modules",),
    "dichotomy.kernels.cupy.metrics": ("dichotomy.refimpl.metrics",),
    "dichotomy.validation.sweep": ("dichotomy.experiments.sweep",),
    "dichotomy.validation.cluster": ("dichotomy.experiments.cluster",),
    "dichotomy.validation.phase": ("dichotomy.experiments.phase",),
    "dichotomy.validation.runs": ("dichotomy.experiments.runs",),
    "dichotomy.validation.plots": ("dichotomy.plots",),
}
RENAMED = {  # old public names inside a moved module -> their new names
    "dichotomy.refimpl.limits.transition": {"Transition": "Switch", "measured_transition": "measured_switch"},
}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads its new module(s) under it."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return None  # the default: a fresh module, replaced in exec_module

    def exec_module(self, module):
        name = module.__name__
        parts = [importlib.import_module(p) for p in MOVED[name]]
        warnings.warn(f"{name} moved to {MOVED[name][0]}" + (f" and {', '.join(MOVED[name][1:])}" if len(parts) > 1
                      else "") + " (docs/architecture.md, 'Moved modules'); the old name goes in a later release",
                      DeprecationWarning, stacklevel=2)
        if len(parts) == 1 and name not in RENAMED:
            sys.modules[name] = parts[0]  # the module itself: a monkeypatch through the old name patches it
            return
        combined = types.ModuleType(name, parts[0].__doc__)
        for part in reversed(parts):
            combined.__dict__.update({k: v for k, v in vars(part).items() if not k.startswith("__")})
        for old, new in RENAMED.get(name, {}).items():
            setattr(combined, old, getattr(combined, new))
        sys.modules[name] = combined


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (dichotomy/__init__.py calls it)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
