"""What `dichotomy --help` and a mistyped command import: nothing heavy (counted, not timed).

Every command pays its imports before it can say anything; the heavy ones (Numba, cvxpy, matplotlib, xarray,
the peers, SciPy's solvers) are imported where they are used, so help and argument errors come back at once
(0.39 s measured on this project's 2-core machine, from 2.7 s before; docs/user-guide.md).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.patience import patience

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numba", "llvmlite", "cvxpy", "matplotlib", "xarray", "torch", "jax", "dask", "distributed", "highspy",
         "pandas", "scipy.optimize", "scipy.special", "scipy.sparse.linalg")


COUNT = ("import json, sys\nfrom dichotomy.cli import main\nrc = main(sys.argv[1:])\n"
         "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}), file=sys.stderr)\n")


def imported(*argv) -> tuple[set[str], int]:
    """The modules a fresh interpreter holds after the command ``argv``, and its exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", COUNT, *argv], env=env, capture_output=True, text=True,
                          timeout=patience(300))
    last = json.loads(done.stderr.strip().splitlines()[-1])
    return set(last["modules"]), last["rc"]


@pytest.mark.parametrize("argv,code", [
    (["--help"], 0),
    (["train", "--help"], 0),
    (["validate", "--help"], 0),
    (["sweep", "--help"], 0),
    (["bench", "--help"], 0),
    (["trian"], 2),
    (["train", "diagonal-net", "--steps", "many", "--out", "x"], 2),
])
def test_help_and_argument_errors_import_nothing_heavy(argv, code):
    names, rc = imported(*argv)
    assert rc == code
    assert "argparse" in names and "dichotomy.cli.app" in names  # the count sees the imports it checks
    heavy = sorted(n for n in names if n.startswith(HEAVY))
    assert not heavy, heavy
