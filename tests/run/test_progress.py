"""Progress that tells the truth: a compact log off a terminal, and no ETA measured over the compilation."""

import io
import time

from dichotomy.run import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_into_a_file_updates_every_half_minute_and_on_a_terminal_live(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    logged = progress.bar(100, show=True)
    assert logged.mininterval == progress.LOG_INTERVAL and not logged.dynamic_ncols
    logged.close()
    monkeypatch.setattr("sys.stderr", _Terminal())
    live = progress.bar(100, show=True)
    assert live.mininterval == 0.5
    live.close()


def test_the_clock_restarts_after_the_compiling_call_and_keeps_the_count(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())
    bar = progress.bar(1000, show=True)
    time.sleep(0.3)  # the first engine call, compiling
    bar.update(1)
    progress.restart_clock(bar)
    assert bar.n == 1 and bar.format_dict["elapsed"] < 0.2  # the compilation is out of the clock
    time.sleep(0.05)
    bar.update(99)
    rate = bar.format_dict["rate"] or (bar.n - bar.initial) / bar.format_dict["elapsed"]
    assert rate > 500  # 99 steps in ~0.05 s, not 100 steps in ~0.35 s
    bar.close()


def test_a_long_train_into_a_file_leaves_a_line_not_a_stream(tmp_path):
    """Run as users do, stderr into a file: the bar's updates stay a few, not hundreds of kilobytes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.patience import patience

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(tmp_path / "log.txt", "w") as log:
        done = subprocess.run([sys.executable, "-m", "dichotomy", "train", "diagonal-net", "--steps", "2e5",
                               "--no-plot", "--no-limits", "--out", str(tmp_path / "run")], env=env, stdout=log,
                              stderr=log, timeout=patience(600))
    assert done.returncode == 0
    text = (tmp_path / "log.txt").read_text()
    assert text.count("\r") <= 10 and len(text) < 4000, text[-500:]
