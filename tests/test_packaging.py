"""One distribution, one import package: the wheel installs `dichotomy` only, with every folder mapped into it,
and the package imports the same way from an installed copy, an editable install or a source checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.patience import patience

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package_with_every_folder_and_the_cuda_sources(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=patience(600))
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("dichotomy_grokking-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"dichotomy"}, tops  # no top-level refimpl, kernels or validation
    for module in ("dichotomy/cli/__init__.py", "dichotomy/run/driver.py", "dichotomy/refimpl/limits/ntk.py",
                   "dichotomy/kernels/numba/base.py", "dichotomy/kernels/cupy/sources/common.cuh",
                   "dichotomy/kernels/cupy/sources/relu_mlp.cu", "dichotomy/validation/suite.py"):
        assert module in names, module
    assert not any(n.startswith("dichotomy/tests") for n in names)


def test_the_package_imports_by_its_one_name_from_anywhere(tmp_path):
    """From another directory (the installed or editable copy) and from the checkout (the source-tree path)."""
    code = ("import dichotomy.run.driver, dichotomy.kernels, dichotomy.validation.suite, dichotomy.cli;"
            "import importlib.util as u;"
            "print(all(u.find_spec(n) is None for n in ('refimpl', 'kernels', 'validation')))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for cwd in (tmp_path, ROOT):
        done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=patience(300))
        assert done.returncode == 0, done.stderr[-2000:]
        if cwd == tmp_path:  # outside the checkout nothing but `dichotomy` is importable
            assert done.stdout.strip() == "True"
    done = subprocess.run([sys.executable, "-m", "dichotomy", "presets"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=patience(300))
    assert done.returncode == 0 and "fig1a-quick" in done.stdout
