"""Shared fixtures and the hypothesis profiles: ``ci`` (derandomized, used when CI is set) and ``dev``."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# deadline=None: the first call of a case may compile (Numba) or warm caches; timing is not what we test.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=40, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def rng():
    return np.random.default_rng(20240505)


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory):
    """The numba engines' cached kernel choices go to a folder of this session, not the user's cache."""
    if "DICHOTOMY_CACHE_DIR" not in os.environ:
        os.environ["DICHOTOMY_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernel-cache"))
    yield
