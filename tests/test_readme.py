"""The README's tour runs as written, in seconds, and teaches what it says (0.5 on the plateau, 1.0 after)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.patience import patience

ROOT = Path(__file__).resolve().parents[1]


def test_the_tour_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    tour = text.split("## A ten-line tour", 1)[1]
    code = re.search(r"```python\n(.*?)```", tour, re.S).group(1)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=patience(600))
    assert done.returncode == 0, done.stderr[-2000:]
    first, plateau, last = (float(x) for x in re.findall(r"[\d.]+", done.stdout.strip().splitlines()[-1]))
    assert abs(first - 0.5) < 0.1 and abs(plateau - 0.5) < 0.1 and last == 1.0
    assert (tmp_path / "runs" / "tour" / "trajectory.npz").is_file()
