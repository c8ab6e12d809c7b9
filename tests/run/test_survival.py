"""Long runs that survive (docs/user-guide.md, "What survives what"): checkpoints resume bit for bit after a
signal or kill -9; every file is written atomically; damaged, edited or missing results are detected by their
manifest and recomputed; a full disk or a read-only --out is one line and leaves what was there intact; one
writer per --out; nothing is unpickled.

Subprocess tests run the real command (``python -m dichotomy``) and kill it; in-process tests stop the driver
at an exact step by sending the process SIGTERM from inside an engine's ``advance``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dichotomy import errors
from dichotomy.cli import main
from dichotomy.kernels import get_backend
from dichotomy.refimpl import data, diagonal_net, matrix_factorization, relu_mlp
from dichotomy.refimpl.steppers import Flow, LossNormalized
from dichotomy.run import driver
from dichotomy.run.checkpoint import Checkpoints, Slot
from dichotomy.run.trajectory import Trajectory, load
from dichotomy.store import files, manifest
from tests.patience import patience

ROOT = Path(__file__).resolve().parents[2]
RECORD = [0, 1, 2, 5, 9, 16, 63, 64, 65, 129, 194, 300]


def _same(got: Trajectory, want: Trajectory) -> None:
    """Bitwise equal: steps, every metric, every parameter, probe outputs, status and config."""
    np.testing.assert_array_equal(got.steps, want.steps)
    assert got.metrics.keys() == want.metrics.keys()
    for k in want.metrics:
        np.testing.assert_array_equal(got.metrics[k], want.metrics[k], err_msg=k)
    for k in want.params:
        np.testing.assert_array_equal(got.params[k], want.params[k], err_msg=k)
    if want.outputs is None:
        assert got.outputs is None
    else:
        np.testing.assert_array_equal(got.outputs, want.outputs)
    assert (got.status, got.config) == (want.status, want.config)


class _SigtermAt:
    """An engine factory whose engines send this process SIGTERM once they pass step ``at`` (in-process, exact:
    the driver's handler notes it and stops at the end of that chunk)."""

    def __init__(self, backend, at: int):
        self.engine, self.at, self.name = backend.engine, at, backend.name

    def unsupported(self, *args):
        return self.engine.unsupported(*args)

    def flow_engine(self):
        """The same, for the backend's flow engines (advanced by ``advance_toward``)."""
        return _SigtermAt(type("Flow", (), {"engine": self.engine.flow_engine(), "name": self.name}), self.at)

    def __call__(self, *args, **kwargs):
        engine = self.engine(*args, **kwargs)
        name = "advance_toward" if getattr(engine, "continuous", False) else "advance"
        advance, at = getattr(engine, name), self.at

        def advance_then_signal(*a):
            before = engine.step
            out = advance(*a)
            if before < at <= engine.step:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        setattr(engine, name, advance_then_signal)
        return engine


def _problem(kind: str):
    """(model, configs, params, data, lrs, wds, schedule) of a small problem; batches mix depth, alpha, lr and
    include a run that diverges."""
    rng = np.random.default_rng(3)
    if kind == "mlp":
        ds = data.modular_arithmetic(rng, p=5, train_fraction=0.6)
        c = relu_mlp.Config(D=10, h=8, out=5)
        return relu_mlp, [c], [relu_mlp.init(c, rng)], ds, [0.1], [0.01], None
    if kind == "loss-normalized":
        ds = data.modular_arithmetic(rng, p=5, train_fraction=0.6)
        c = relu_mlp.Config(D=10, h=8, out=5)
        return relu_mlp, [c], [relu_mlp.init(c, rng)], ds, [0.5], [0.0], LossNormalized(eta=0.05)
    if kind == "flow-completion":
        ds = data.multiplication_table(rng, d=8, train_fraction=0.4)
        c = matrix_factorization.Config(d=8, alpha=1.0)
        return matrix_factorization, [c], [matrix_factorization.init(c)], ds, [0.1], [0.01], Flow(rtol=1e-7)
    ds = data.sparse_linear_classification(rng, d=40, n_train=12, n_test=10, k=3)
    if kind == "normalized-flow":
        c = diagonal_net.Config(d=40, alpha=1.0)
        return diagonal_net, [c], [diagonal_net.init(c)], ds, [0.02], [0.0], Flow(eta=0.005)
    if kind == "flow":
        configs = [diagonal_net.Config(d=40, alpha=2.0, L=2), diagonal_net.Config(d=40, alpha=1.5, L=3)]
        return diagonal_net, configs, [diagonal_net.init(c) for c in configs], ds, [0.05, 0.02], [0.01, 0.0], Flow()
    if kind == "diagonal":
        c = diagonal_net.Config(d=40, alpha=2.0)
        return diagonal_net, [c], [diagonal_net.init(c)], ds, [0.05], [0.01], None
    configs = [diagonal_net.Config(d=40, alpha=2.0, L=2), diagonal_net.Config(d=40, alpha=1.5, L=3),
               diagonal_net.Config(d=40, alpha=2.0, L=2)]
    return (diagonal_net, configs, [diagonal_net.init(c) for c in configs], ds, [0.05, 0.04, 400.0],
            [0.01, 0.0, 0.01], None)


CASES = [("numpy", "diagonal"), ("numpy", "mlp"), ("numpy", "loss-normalized"), ("numpy", "batch"),
         ("numba", "diagonal"), ("numba", "mlp"), ("numba", "batch"), ("numpy", "flow"), ("numba", "flow"),
         ("numba", "flow-completion"), ("numpy", "normalized-flow")]


@pytest.mark.parametrize("backend_name, kind", CASES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # cleared
@given(at=st.integers(1, 299))
def test_a_run_stopped_by_sigterm_at_any_step_resumes_bit_for_bit(tmp_path_factory, caplog, backend_name, kind, at):
    backend = get_backend(backend_name)
    model, configs, params, ds, lrs, wds, schedule = _problem(kind)
    kwargs = dict(lr=lrs, wd=wds, steps=300, record=RECORD, probe=ds.X_test, schedule=schedule)
    want = backend.run_batch(model, configs, params, ds, **kwargs)
    folder = tmp_path_factory.mktemp("ck")
    with pytest.raises(errors.TrainingInterrupted) as stop:
        driver.run_batch(model, configs, params, ds, engine=_SigtermAt(backend, at), checkpoints=Checkpoints(folder),
                        **kwargs)
    assert stop.value.exit_code == 143 and stop.value.signal_name == "SIGTERM"
    saved = json.loads(next(folder.glob("*.json")).read_text())
    assert at <= saved["step"] <= 300
    caplog.clear()
    with caplog.at_level("INFO", logger="dichotomy"):
        got = backend.run_batch(model, configs, params, ds, checkpoints=Checkpoints(folder), **kwargs)
    assert f"resumed from step {saved['step']}" in caplog.text
    for g, w in zip(got, want, strict=True):
        _same(g, w)
    if kind == "batch":
        assert [t.status for t in got] == ["completed", "completed", "diverged"]


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    backend = get_backend("numpy")
    model, configs, params, ds, lrs, wds, _ = _problem("diagonal")
    kwargs = dict(lr=lrs[0], wd=wds[0], steps=300, record=RECORD, probe=ds.X_test)
    want = backend.run(model, configs[0], params[0], ds, **kwargs)
    for at in (100, 200):  # two checkpoints: at ~100 and ~200
        with pytest.raises(errors.TrainingInterrupted):
            driver.run(model, configs[0], params[0], ds, engine=_SigtermAt(backend, at),
                      checkpoints=Checkpoints(tmp_path), **kwargs)
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    newest, older = (tmp_path / e["file"] for e in doc["files"])
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    with caplog.at_level("INFO", logger="dichotomy"):
        got = backend.run(model, configs[0], params[0], ds, checkpoints=Checkpoints(tmp_path), **kwargs)
    assert "truncated" in caplog.text and f"resumed from step {doc['files'][1]['step']}" in caplog.text
    _same(got, want)


def test_a_checkpoint_of_another_run_is_refused_not_mixed_in(tmp_path):
    backend = get_backend("numpy")
    model, configs, params, ds, lrs, wds, _ = _problem("diagonal")
    with pytest.raises(errors.TrainingInterrupted):
        driver.run(model, configs[0], params[0], ds, lr=0.05, wd=0.01, steps=300, engine=_SigtermAt(backend, 50),
                  checkpoints=Checkpoints(tmp_path, exclusive=True))
    with pytest.raises(errors.ConfigError, match=r"another run \(lr: 0.05 -> 0.06\).*--restart"):
        backend.run(model, configs[0], params[0], ds, lr=0.06, wd=0.01, steps=300,
                    checkpoints=Checkpoints(tmp_path, exclusive=True))
    fresh = backend.run(model, configs[0], params[0], ds, lr=0.06, wd=0.01, steps=300,
                        checkpoints=Checkpoints(tmp_path, exclusive=True, restart=True))
    _same(fresh, backend.run(model, configs[0], params[0], ds, lr=0.06, wd=0.01, steps=300))


# --- the command, killed -------------------------------------------------------------------------------------

TRAIN = ["train", "diagonal-net", "--d", "100", "--n-train", "20", "--n-test", "50", "--steps", "20000",
         "--no-progress", "--no-limits", "--no-plot"]


def _command(*argv) -> list[str]:
    return [sys.executable, "-m", "dichotomy", *map(str, argv)]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _wait_for_checkpoint(proc, sidecar: Path, step: int, timeout: float = 120.0) -> int:
    """Poll until ``sidecar`` records a step >= ``step``; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = files.read_json(sidecar)
        if doc is not None and doc["step"] >= step:
            return doc["step"]
        assert proc.poll() is None, f"the run ended before step {step}: {proc.communicate()}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no checkpoint past step {step} within {timeout} s")


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _assert_same_npz(a: Path, b: Path) -> None:
    x, y = _npz(a), _npz(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.fixture(scope="module")
def clean_train(tmp_path_factory):
    """Uninterrupted runs of TRAIN per backend, in-process: backend -> its out folder."""
    done = {}

    def get(backend):
        if backend not in done:
            out = tmp_path_factory.mktemp(f"clean-{backend}")
            assert main([*TRAIN, "--backend", backend, "--checkpoint-every", "0", "--out", str(out)]) == 0
            done[backend] = out
        return done[backend]

    return get


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_train_killed_mid_run_resumes_bit_for_bit(tmp_path, clean_train, backend, how):
    out = tmp_path / "run"
    argv = [*TRAIN, "--backend", backend, "--checkpoint-every", "0.05", "--out", out]
    target = int(np.random.default_rng(zlib.crc32(f"{backend}{how}".encode())).integers(500, 8000))
    proc = subprocess.Popen(_command(*argv), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, out / "checkpoint" / "checkpoint.json", target)
    sent = time.monotonic()
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=patience(60))
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:  # a checkpoint at the stop, the exit code, within about a second
        assert proc.returncode == 143, err
        assert time.monotonic() - sent < 5
        assert "rerun the same command to resume" in err
    step = files.read_json(out / "checkpoint" / "checkpoint.json")["step"]
    assert not list(out.rglob("*.tmp"))
    again = subprocess.run(_command(*argv), env=_env(), capture_output=True, text=True, timeout=patience(300))
    assert again.returncode == 0, again.stderr
    assert f"resumed from step {step}" in again.stderr
    _assert_same_npz(out / "trajectory.npz", clean_train(backend) / "trajectory.npz")
    assert not (out / "checkpoint").exists()  # removed once the run's manifest is written
    assert manifest.check(out, json.loads((out / "manifest.json").read_text())["config_hash"])


BATCH_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from dichotomy.kernels import get_backend
    from dichotomy.refimpl import data, diagonal_net
    from dichotomy.run.checkpoint import Checkpoints
    out = Path(sys.argv[1])
    ds = data.sparse_linear_classification(np.random.default_rng(0), d=200, n_train=30, n_test=40, k=3)
    configs = [diagonal_net.Config(d=200, alpha=a, L=L) for a, L in ((4.0, 2), (2.0, 3), (8.0, 2))]
    trajs = get_backend("numba").run_batch(
        diagonal_net, configs, [diagonal_net.init(c) for c in configs], ds, lr=[0.05, 0.03, 0.05],
        wd=[0.01, 0.02, 0.0], steps=60000, probe=ds.X_test[:5], checkpoints=Checkpoints(out / "ck", every=0.05))
    for b, t in enumerate(trajs):
        t.save(out / f"run{b}")
""")


def test_a_numba_batch_killed_mid_run_resumes_bit_for_bit(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    command = [sys.executable, "-c", BATCH_SCRIPT]
    subprocess.run([*command, str(clean)], env=_env(), check=True, timeout=patience(300))
    proc = subprocess.Popen([*command, str(killed)], env=_env(), stderr=subprocess.PIPE, text=True)
    sidecar = _wait_for_checkpoint_file(proc, killed / "ck")
    _wait_for_checkpoint(proc, sidecar, 3000)
    proc.kill()
    proc.wait()
    subprocess.run([*command, str(killed)], env=_env(), check=True, timeout=patience(300))
    for b in range(3):
        _assert_same_npz(killed / f"run{b}.npz", clean / f"run{b}.npz")


def _wait_for_checkpoint_file(proc, folder: Path, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(folder.glob("*.json")) if folder.is_dir() else []
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint in {folder}")


# --- validate: killed while saving, damaged artifacts, versions ----------------------------------------------

VALIDATE = ["validate", "--scale", "test", "--only", "fig2", "--no-progress", "--checkpoint-every", "0"]


def _checks(out: Path) -> dict:
    doc = json.loads((out / "report.json").read_text())
    return {name: [(c["name"], c["measured"], c["passed"]) for c in claim["checks"]]
            for name, claim in doc["claims"].items()}


@pytest.fixture(scope="module")
def clean_validate(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate-clean")
    main([*VALIDATE, "--out", str(out)])
    return out


KILL_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys
    from dichotomy.cli import main
    n, target, real = [0], int(sys.argv[1]), os.replace
    def replace(src, dst):
        n[0] += 1
        if n[0] == target:  # half of the claim's files are in place, the rest are not
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst)
    os.replace = replace
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("nth_file", [2, 5])
def test_validate_killed_while_saving_recovers_on_a_plain_rerun(tmp_path, clean_validate, nth_file):
    out = tmp_path / "v"
    shutil.copytree(clean_validate, out)
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_SAVING, str(nth_file), *VALIDATE, "--force",
                             "--out", str(out)], env=_env(), capture_output=True, text=True, timeout=patience(300))
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "fig2" / "manifest.json").exists()  # an unfinished set is never taken as finished
    for npz in (out / "fig2").rglob("*.npz"):
        _npz(npz)  # no truncated file under a final name
    rerun = subprocess.run(_command(*VALIDATE, "--out", out), env=_env(), capture_output=True, text=True,
                           timeout=patience(300))
    assert rerun.returncode in (0, 1), rerun.stderr
    assert "recomputed" in rerun.stderr and "manifest.json is missing" in rerun.stderr
    assert _checks(out) == _checks(clean_validate)


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garble(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def _edit(p):
    doc = json.loads(p.read_text())
    doc["values"]["compute_seconds"] = 1.0  # a plausible edit: same size class, still valid JSON
    p.write_text(json.dumps(doc, indent=1) + "\n")


DAMAGE = {"truncated": ("trajectories/he.npz", _truncate, "bytes"),
          "garbled": ("results.npz", _garble, "sha256"),
          "edited": ("results.json", _edit, ""),
          "deleted": ("trajectories/wd_0.json", Path.unlink, "is missing")}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_artifacts_are_detected_and_recomputed(tmp_path, clean_validate, capsys, kind):
    out = tmp_path / "v"
    shutil.copytree(clean_validate, out)
    rel, damage, why = DAMAGE[kind]
    damage(out / "fig2" / rel)
    main([*VALIDATE, "--out", str(out)])
    err = capsys.readouterr().err
    assert f"claim fig2 recomputed: {out / 'fig2' / rel}" in err and why in err
    report = json.loads((out / "report.json").read_text())["claims"]["fig2"]
    assert report["reused"] is False and any(rel in n for n in report["notes"])
    assert _checks(out) == _checks(clean_validate)
    assert manifest.check(out / "fig2", json.loads((out / "fig2" / "manifest.json").read_text())["config_hash"])


def test_results_of_another_version_are_recomputed_or_reused_on_request(tmp_path, clean_validate, capsys):
    out = tmp_path / "v"
    shutil.copytree(clean_validate, out)
    path = out / "fig2" / "manifest.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "package_version": "0.0.1"}))
    main([*VALIDATE, "--reuse-other-version", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())["claims"]["fig2"]
    assert report["reused"] is True and any("0.0.1 (--reuse-other-version)" in n for n in report["notes"])
    path.write_text(json.dumps({**doc, "package_version": "0.0.1"}))
    main([*VALIDATE, "--out", str(out)])
    assert "written by dichotomy-grokking 0.0.1" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["claims"]["fig2"]["reused"] is False


# --- faults: full disk, read-only --out, two runs, hostile files ---------------------------------------------

def _namespace_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _namespace_works(),
                                 reason="unshare -rm (a user namespace to mount a small tmpfs) is not allowed here")

FULL_DISK = textwrap.dedent("""
    set -u
    D=$(mktemp -d)
    mount -t tmpfs -o size=600k tmpfs "$D"
    OUT="$D/run"
    $PY -m dichotomy train diagonal-net --d 100 --n-train 20 --n-test 50 --steps 300 --backend numpy \\
        --no-progress --no-limits --no-plot --checkpoint-every 0 --out "$OUT" > /dev/null || exit 90
    sha256sum "$OUT/trajectory.npz" > "$D/before"
    head -c 100000000 /dev/zero > "$D/filler" 2>/dev/null   # fill the disk to the last block
    $PY -m dichotomy train diagonal-net --d 100 --n-train 20 --n-test 50 --steps 2000 --backend numpy \\
        --no-progress --no-limits --no-plot --checkpoint-every 0 --restart --out "$OUT" 2>&1
    echo "rc=$?"
    sha256sum -c --quiet "$D/before" && echo "previous trajectory intact"
    ls -a "$OUT" | grep -c tmp || true
    mount -o remount,ro "$D"
    $PY -m dichotomy train diagonal-net --steps 10 --backend numpy --no-progress --out "$OUT/sub" 2>&1
    echo "ro rc=$?"
""")


@needs_tmpfs
def test_a_full_disk_and_a_read_only_out_are_one_line_and_keep_what_was_there():
    proc = subprocess.run(["unshare", "-rm", "bash", "-c", FULL_DISK], capture_output=True, text=True,
                          env={**_env(), "PY": sys.executable}, timeout=patience(300))
    text = proc.stdout
    assert "rc=2" in text, text + proc.stderr
    disk, read_only = [line for line in text.splitlines() if line.startswith("dichotomy: error:")]
    assert "No space left on device" in disk and "unchanged" in disk, text
    assert "previous trajectory intact" in text
    assert "\n0\n" in text  # no temporary file left behind
    assert "ro rc=2" in text and "Read-only file system" in read_only


def test_two_runs_into_one_out_the_second_exits_with_a_clear_message(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TRAIN[:-3], "--backend", "numpy", "--steps", "200000", "--no-progress", "--out", out]
    proc = subprocess.Popen(_command(*argv), env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (lock := out / files.LOCK_NAME).exists() or str(proc.pid) not in lock.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert main([*map(str, argv)]) == 2
        err = capsys.readouterr().err
        assert f"is in use by PID {proc.pid}" in err and "choose another --out" in err
    finally:
        proc.kill()
        proc.wait()
    # The dead process's lock is taken over: its file is still there, with a dead PID in it.
    assert str(proc.pid) in (out / files.LOCK_NAME).read_text()
    assert main([*TRAIN, "--backend", "numpy", "--steps", "50", "--restart", "--out", str(out)]) == 0


class _Boom:
    """Unpickling this runs code: it would create the file named in the test."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_hostile_files_are_never_unpickled(tmp_path, caplog):
    marker = tmp_path / "pwned"
    hostile = {"steps": np.array([_Boom(marker)], dtype=object)}
    np.savez(tmp_path / "trajectory.npz", **hostile)  # written with pickle, on purpose
    (tmp_path / "trajectory.json").write_text(json.dumps({"format_version": 1, "status": "completed", "config": {},
                                                          "meta": {}, "metrics": [], "params": []}))
    with pytest.raises(errors.ConfigError, match="not a readable trajectory"):
        load(tmp_path / "trajectory")
    # The same file as a checkpoint whose sidecar vouches for it: refused, training starts over.
    backend = get_backend("numpy")
    model, configs, params, ds, *_ = _problem("diagonal")
    folder = tmp_path / "ck"
    backend.run(model, configs[0], params[0], ds, lr=0.05, wd=0.0, steps=20, checkpoints=Checkpoints(folder))
    sidecar = next(folder.glob("*.json"))
    doc = json.loads(sidecar.read_text())
    target = folder / doc["files"][0]["file"]
    shutil.copyfile(tmp_path / "trajectory.npz", target)
    doc["files"][0].update(bytes=target.stat().st_size, sha256=files.sha256(target))
    sidecar.write_text(json.dumps(doc))
    with caplog.at_level("INFO", logger="dichotomy"):
        backend.run(model, configs[0], params[0], ds, lr=0.05, wd=0.0, steps=20, checkpoints=Checkpoints(folder))
    assert "unreadable" in caplog.text and "resumed" not in caplog.text
    assert not marker.exists()
    with pytest.raises(TypeError, match="pickle"):
        files.save_npz(tmp_path / "x.npz", hostile)


# --- the pieces ----------------------------------------------------------------------------------------------

def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = files.write_text(tmp_path / "a.txt", "old")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(errors.StorageError, match=r"cannot write .*a\.txt: No space left on device; .*unchanged"):
        files.atomic_write(path, fail)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~files._UMASK)


def test_manifest_names_the_file_and_the_reason(tmp_path):
    a = files.write_text(tmp_path / "a.txt", "alpha")
    b = files.write_text(tmp_path / "sub" / "b.txt", "beta")
    manifest.write(tmp_path, [a, b], "h1")
    assert manifest.check(tmp_path, "h1") and manifest.listed(tmp_path) == ["a.txt", "sub/b.txt"]
    assert "another config" in manifest.check(tmp_path, "h2").reason
    a.write_text("alphA")
    assert "a.txt differs from its sha256" in manifest.check(tmp_path, "h1").reason
    a.write_text("alph")
    assert "a.txt has 4 bytes, the manifest says 5" in manifest.check(tmp_path, "h1").reason
    b.unlink()
    a.write_text("alpha")
    assert "b.txt is missing" in manifest.check(tmp_path, "h1").reason
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["files"] = {"../../etc/passwd": {"sha256": "", "bytes": 0}}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    assert "bad entry" in manifest.check(tmp_path, "h1").reason
    (tmp_path / "manifest.json").write_text("{trunc")
    assert "unreadable" in manifest.check(tmp_path, "h1").reason
    manifest.invalidate(tmp_path)
    assert "never finished" in manifest.check(tmp_path, "h1").reason


class _Term(KeyboardInterrupt):
    """What the CLI's SIGTERM handler raises outside the driver."""

    signal_name = "SIGTERM"


@pytest.fixture
def sigterm_raises():
    """SIGTERM raises _Term for the test (the default would end pytest)."""

    def handler(signum, frame):
        raise _Term

    previous = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_signals_held_lands_after_the_block_not_inside_it(sigterm_raises):
    done = []
    with pytest.raises(_Term):
        with files.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler would have run by now
            done.append(True)
    assert done == [True]


def test_a_second_signal_stops_at_once_with_its_own_exit_code(tmp_path):
    backend = get_backend("numpy")
    model, configs, params, ds, *_ = _problem("diagonal")

    class Twice(_SigtermAt):
        def __call__(self, *args, **kwargs):
            engine = self.engine(*args, **kwargs)
            advance = engine.advance

            def advance_twice(k):
                advance(k)
                if engine.step >= 10:
                    os.kill(os.getpid(), signal.SIGTERM)
                    os.kill(os.getpid(), signal.SIGTERM)

            engine.advance = advance_twice
            return engine

    with pytest.raises(errors.TrainingInterrupted) as stop:
        driver.run(model, configs[0], params[0], ds, lr=0.05, wd=0.0, steps=300, engine=Twice(backend, 0),
                  checkpoints=Checkpoints(tmp_path))
    assert stop.value.signal_name == "SIGTERM" and stop.value.exit_code == 143


def test_a_signal_during_the_final_checkpoint_is_not_lost(tmp_path, monkeypatch, sigterm_raises):
    backend = get_backend("numpy")
    model, configs, params, ds, *_ = _problem("diagonal")
    real = Slot.save

    def save_and_signal(self, step, arrays):
        if step == 50:  # the final save
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, step, arrays)

    monkeypatch.setattr(Slot, "save", save_and_signal)
    with pytest.raises(errors.TrainingInterrupted) as stop:
        backend.run(model, configs[0], params[0], ds, lr=0.05, wd=0.0, steps=50, checkpoints=Checkpoints(tmp_path))
    assert stop.value.exit_code == 143
    monkeypatch.setattr(Slot, "save", real)
    _same(backend.run(model, configs[0], params[0], ds, lr=0.05, wd=0.0, steps=50, checkpoints=Checkpoints(tmp_path)),
          backend.run(model, configs[0], params[0], ds, lr=0.05, wd=0.0, steps=50))


def test_a_refused_periodic_checkpoint_warns_and_training_goes_on(tmp_path, monkeypatch, caplog):
    backend = get_backend("numpy")
    model, configs, params, ds, *_ = _problem("diagonal")
    real, calls = Slot.save, []

    def full_once(self, step, arrays):
        calls.append(step)
        if len(calls) == 1:
            raise errors.StorageError("cannot write x.npz: No space left on device")
        return real(self, step, arrays)

    monkeypatch.setattr(Slot, "save", full_once)
    with caplog.at_level("WARNING", logger="dichotomy"):
        got = backend.run(model, configs[0], params[0], ds, lr=0.05, wd=0.0, steps=300,
                          checkpoints=Checkpoints(tmp_path, every=1e-9))
    assert "training goes on" in caplog.text and len(calls) > 2 and got.status == "completed"


def test_checkpoint_files_are_never_overwritten_and_two_are_kept(tmp_path):
    slot = Checkpoints(tmp_path).slot("k" * 64, what={})
    first = slot.save(7, {"a": np.zeros(3)})
    second = slot.save(7, {"a": np.ones(3)})
    third = slot.save(9, {"a": np.ones(4)})
    assert len({first, second, third}) == 3
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == sorted([second.name, third.name])
    np.testing.assert_array_equal(slot.load()["a"], np.ones(4))


def test_a_lock_held_by_a_live_process_is_never_removed(tmp_path):
    with files.locked(tmp_path):
        assert files.remove_lock(tmp_path) is False
        assert (tmp_path / files.LOCK_NAME).exists()
        with pytest.raises(errors.OutputLocked, match=f"PID {os.getpid()}"):
            with files.locked(tmp_path):
                pass
    assert not (tmp_path / files.LOCK_NAME).exists()  # removed by its holder on the way out
    files.write_text(tmp_path / files.LOCK_NAME, "PID 1 on elsewhere (a dead run)")
    assert files.remove_lock(tmp_path) is True and not (tmp_path / files.LOCK_NAME).exists()
