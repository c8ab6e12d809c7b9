"""The report tells the truth while the suite runs, and names the backend each claim ran on."""

import types

from dichotomy.kernels import get_backend
from dichotomy.validation import suite
from dichotomy.validation.claim import Check, Results


def _fake_claim(ran_on: str | None):
    """A claim that computes nothing and may say it ran elsewhere than asked (as fig4 does without a schedule)."""

    def compute(config, backend, progress=False):
        return Results({"backend": ran_on} if ran_on else {}, {}, {})

    return types.SimpleNamespace(
        TITLE="fake", CLAIM="nothing", CONFIGS={"test": {"k": 1}}, compute=compute, plot=lambda results, out: [],
        check=lambda results, config: [Check.holds("ok", "always", 1.0, True, "none")])


def test_a_claim_that_ran_elsewhere_says_so_in_the_reports_config(tmp_path, monkeypatch):
    monkeypatch.setitem(suite.CLAIMS, "fake", _fake_claim("numpy"))
    report = suite.run_claim("fake", "test", get_backend("numba"), tmp_path, progress=False, checkpoint_every=0)
    assert report.config["backend"] == "numpy"
    monkeypatch.setitem(suite.CLAIMS, "plain", _fake_claim(None))
    report = suite.run_claim("plain", "test", get_backend("numba"), tmp_path, progress=False, checkpoint_every=0)
    assert report.config["backend"] == "numba"


def test_while_the_suite_runs_the_report_names_what_is_to_come(tmp_path, monkeypatch):
    monkeypatch.setitem(suite.CLAIMS, "fake", _fake_claim(None))
    report = suite.run_claim("fake", "test", get_backend("numpy"), tmp_path, progress=False, checkpoint_every=0)
    suite.write([report], tmp_path, "test", "numpy", to_come=["fig4", "scaling"])
    text = (tmp_path / "report.md").read_text()
    assert "1 of 1 claims pass so far; 2 to come (fig4, scaling)" in text
    suite.write([report], tmp_path, "test", "numpy")
    assert "1 of 1 claims pass. " in (tmp_path / "report.md").read_text()
