"""The old module names still import for one release, with a warning naming the new home (dichotomy/_moved.py)."""

import importlib
import sys
import warnings

import pytest

from dichotomy._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_imports_with_a_warning_that_names_the_new_home(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old][0]}"):
        module = importlib.import_module(old)
    new = importlib.import_module(MOVED[old][0])
    public = [k for k in vars(new) if not k.startswith("_")]
    assert public and all(hasattr(module, k) for k in public)


def test_a_one_to_one_move_is_the_same_module_so_a_patch_through_it_takes():
    sys.modules.pop("dichotomy.refimpl.train", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from dichotomy.refimpl import train
    from dichotomy.run import driver

    assert train is driver


def test_the_old_names_inside_split_modules_still_answer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from dichotomy.refimpl import errors, tree
        from dichotomy.refimpl.limits import transition
    from dichotomy import diagnosis
    from dichotomy.refimpl import checks, params

    assert errors.positive is checks.positive and errors.ConfigError.__module__ == "dichotomy.errors"
    assert tree.flatten is params.flatten and tree.check_call is checks.check_call
    assert transition.measured_transition is diagnosis.measured_switch and transition.Transition is diagnosis.Switch
    assert transition.default_probe.__module__ == "dichotomy.refimpl.limits.predictors"


def test_an_unknown_old_looking_name_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("dichotomy.refimpl.nothing_here")
