"""``dichotomy validate``: run the claims, check them, and write the report (docs/validation.md).

For each claim in :data:`CLAIMS` the suite takes the config of the chosen scale, reuses the results saved in
``OUT/NAME/`` when their manifest verifies (every file intact, the same config hash and package version; so an
interrupted suite resumes where it stopped), otherwise computes them (each run checkpointed, so a killed claim
resumes mid-run) and saves them, then plots and checks, and writes the claim's manifest last. It writes
``OUT/report.md`` (one section per claim: figure, predicted-vs-measured table, verdict) and ``OUT/report.json``
(every check).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from dichotomy import errors, signals
from dichotomy.run.checkpoint import Checkpoints
from dichotomy.run.trajectory import versions
from dichotomy.store import files, manifest
from dichotomy.store.resultset import ResultSet
from dichotomy.validation import (
    agreement,
    delay_law,
    fig1a,
    fig1b,
    fig2,
    fig3,
    fig4,
    large_alpha,
    modular_kernel,
    sample_complexity,
    scaling,
    ungrokking,
)
from dichotomy.validation.claim import Check, Results, check_to_json, config_hash

CLAIMS: dict[str, ModuleType] = {"fig1a": fig1a, "fig1b": fig1b, "fig2": fig2, "fig3": fig3, "fig4": fig4,
                                 "scaling": scaling, "sample_complexity": sample_complexity,
                                 # beyond the paper: claims of follow-up work (issue 29; docs/validation.md)
                                 "modular_kernel": modular_kernel, "delay_law": delay_law, "ungrokking": ungrokking,
                                 "large_alpha": large_alpha}
SCALES = ("quick", "paper", "test")

log = logging.getLogger(__name__)


@dataclass
class ClaimReport:
    name: str
    title: str
    claim: str
    config: dict
    checks: list[Check]
    figures: list[Path]
    seconds: float  # to compute the results (when reused: what computing them took then)
    reused: bool
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def select(only: list[str] | None) -> list[str]:
    """The claim names to run, in the suite's order; unknown names raise ConfigError."""
    if not only:
        return list(CLAIMS)
    unknown = [n for n in only if n not in CLAIMS]
    if unknown:
        raise errors.ConfigError(f"unknown claim {unknown[0]!r}; choose from {', '.join(CLAIMS)}")
    return [n for n in CLAIMS if n in only]


ASK_ABOVE_HOURS = 5 / 60  # a paper-scale run projected longer than this (or not projected) is asked about first


def paper_cost(names: list[str], flow: bool = False) -> tuple[str, float | None]:
    """The projected CPU time and memory of ``names`` at the paper's scale: a table, and the total hours.

    Each claim states its cost (``PAPER_COST``: hours on 2 cores, memory, and what they rest on:
    docs/validation-paper.md; ``PAPER_COST_FLOW`` through the gradient flow). The total is None when some claim
    has no projection.
    """
    rows, total = ["claim | CPU time (2 cores) | memory | from", "--- | --- | --- | ---"], 0.0
    for name in names:
        cost = getattr(CLAIMS[name], "PAPER_COST_FLOW", None) if flow else CLAIMS[name].PAPER_COST
        cost = cost or {"hours": None, "memory_gb": math.nan, "basis": "no gradient-flow version"}
        hours = cost["hours"]
        when = "not projected" if hours is None else (f"{hours * 60:.0f} min" if hours < 1 else
                                                       f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} days")
        rows.append(f"{name} | {when} | {cost['memory_gb']:g} GB | {cost['basis']}")
        total = None if hours is None or total is None else total + hours
    return "\n".join(rows), total


def claim_config(name: str, scale: str, backend_name: str, flow: dict | None = None) -> dict:
    """The config of claim ``name`` at ``scale``: what is hashed, reused and reported.

    With ``flow`` (:class:`refimpl.steppers.Flow` settings), the claim's run is the gradient flow, and its config
    gains the claim's ``FLOW`` settings for that scale: the GD prefix it is compared with and the tolerance.
    """
    module = CLAIMS[name]
    if scale not in module.CONFIGS:
        raise errors.ConfigError(f"claim {name} has no {scale!r} config; it has {', '.join(module.CONFIGS)}")
    config = {**module.CONFIGS[scale], "scale": scale, "backend": backend_name}
    if flow is not None:
        if scale not in getattr(module, "FLOW", {}):
            takes = [n for n in CLAIMS if scale in getattr(CLAIMS[n], "FLOW", {})]
            raise errors.ConfigError(f"claim {name} has no gradient-flow version at {scale} scale; --flow takes "
                                     f"{', '.join(takes)} (pick them with --only)")
        config["run"] = {**config["run"], "flow": dict(flow)}
        config.update(module.FLOW[scale])
    return config


def run_claim(name: str, scale: str, backend, out: Path, *, progress: bool = True, force: bool = False,
              checkpoint_every: float | None = None, reuse_other_version: bool = False,
              flow: dict | None = None) -> ClaimReport:
    """Compute (or reuse), plot and check one claim; its files go to ``out / name``.

    Saved results are reused only when the folder's manifest verifies (:func:`dichotomy.store.manifest.check`: every
    file intact, the same config hash and package version, or any version with ``reuse_other_version``);
    otherwise the claim is recomputed with a note saying which file and why. While computing, every run
    checkpoints into ``out / name / checkpoints`` (every ``checkpoint_every`` seconds; 0 off), so a killed
    claim resumes where it stopped; the checkpoints are removed once the manifest is written. With ``flow``
    (:func:`claim_config`), the claim runs through the gradient flow and is also checked against GD over a prefix
    of its run (:mod:`dichotomy.validation.agreement`).
    """
    module = CLAIMS[name]
    config = claim_config(name, scale, backend.name, flow)
    folder = out / name
    results_set = ResultSet(folder, config_hash(config))
    start = time.perf_counter()
    notes, results, verdict = [], None, None
    if not force:
        verdict = results_set.check(other_version=reuse_other_version)
        if verdict:
            try:
                results = Results.load(folder)
            except errors.DichotomyError as e:  # verified yet unreadable: recompute all the same
                verdict = manifest.Verdict(False, str(e))
        if results is not None and verdict.version != manifest.package_version():
            notes.append(f"Reused results written by {manifest.PACKAGE} {verdict.version} (--reuse-other-version); "
                         f"this is {manifest.package_version()}.")
        elif results is None and folder.is_dir() and any(folder.iterdir()):
            notes.append(f"Recomputed: {verdict.reason}.")
            log.warning("claim %s recomputed: %s", name, verdict.reason)
    reused = results is not None
    checkpoints = None if checkpoint_every == 0 else Checkpoints(folder / "checkpoints", every=checkpoint_every)
    if not reused:
        results_set.begin()
        if force and checkpoints is not None:
            checkpoints.clear()
        results = module.compute(config, backend.checkpointed(checkpoints), progress=progress)
        results.values["compute_seconds"] = time.perf_counter() - start
        try:
            _add(results, agreement.gd_regime(config, results))
        except errors.DichotomyError as e:  # the claim's results stand; only this check is missing
            _add(results, {"notes": [f"No lr x sharpness check: {e}."]})
        if flow is not None:
            gd_start = time.perf_counter()
            values, arrays = agreement.gd_prefix(config, backend, results.trajectories["run"], progress=progress)
            _add(results, {**values, "gd_prefix_seconds": time.perf_counter() - gd_start})
            results.arrays.update(arrays)
        paths = results.save(folder, config)
    else:
        paths = results_set.listed()
    figures = module.plot(results, folder)
    checks = module.check(results, config) + agreement.checks(results.values, config)
    results_set.seal(sorted(set(paths) | set(figures)), checkpoints=checkpoints, claim=name, scale=scale,
                     version=verdict.version if reused else None)
    notes += list(results.values.get("notes", []))
    seconds = results.values.get("compute_seconds") or time.perf_counter() - start
    ran_on = results.values.get("backend", config["backend"])  # a claim may run elsewhere (fig4: numpy)
    return ClaimReport(name, module.TITLE, module.CLAIM, {**config, "backend": ran_on}, checks, figures, seconds,
                       reused, notes)


def _add(results: Results, values: dict) -> None:
    """Add ``values`` to a claim's results; their ``notes`` extend the claim's own."""
    notes = list(values.pop("notes", []))
    results.values.update(values)
    if notes:
        results.values["notes"] = list(results.values.get("notes", [])) + notes


def run(names: list[str], scale: str, backend, out: Path, *, progress: bool = True, force: bool = False,
        echo=None, checkpoint_every: float | None = None, reuse_other_version: bool = False,
        flow: dict | None = None) -> list[ClaimReport]:
    """Run the claims ``names`` at ``scale`` and write the report after each one (nothing is lost).

    Progress lines go to ``echo`` (default: this module's logger at INFO level). ``checkpoint_every``,
    ``reuse_other_version`` and ``flow`` are :func:`run_claim`'s; with ``flow``, every claim must have a flow
    version (checked before anything runs)."""
    echo = log.info if echo is None else echo
    if scale not in SCALES:
        raise errors.ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    if flow is not None:
        for name in names:
            claim_config(name, scale, backend.name, flow)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for i, name in enumerate(names, 1):
        signals.check()  # between two claims: a signal noted while Numba compiled is honoured here
        echo(f"[{i}/{len(names)}] {name}: {CLAIMS[name].TITLE}")
        start = time.perf_counter()
        try:
            report = run_claim(name, scale, backend, out, progress=progress, force=force,
                               checkpoint_every=checkpoint_every, reuse_other_version=reuse_other_version, flow=flow)
        except KeyboardInterrupt:  # Ctrl-C stops the suite; the finished claims are in the report already
            raise
        except errors.StorageError:  # the disk refused: nothing more can be saved, so stop here
            raise
        except errors.DichotomyError as e:  # a diverged run, a failed solver: this claim fails, the suite goes on
            log.warning("claim %s stopped by an error: %s", name, e)
            report = ClaimReport(name, CLAIMS[name].TITLE, CLAIMS[name].CLAIM, CLAIMS[name].CONFIGS.get(scale, {}),
                                 [Check.holds("ran", "the claim's computation completes", float("nan"), False,
                                              "no error")],
                                 [], time.perf_counter() - start, False, [f"stopped by an error: {e}"])
        reports.append(report)
        verdict = "PASS" if report.passed else "FAIL"
        echo(f"    {verdict} ({sum(c.passed for c in report.checks)}/{len(report.checks)} checks, "
             + ("reused saved results)" if report.reused else f"{report.seconds:.0f} s)"))
        write(reports, out, scale, backend.name, to_come=names[i:])
    return reports


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def markdown(reports: list[ClaimReport], scale: str, backend: str, to_come: list[str] = ()) -> str:
    """The report a theorist reads: a summary table, then one section per claim.

    While the suite runs, ``to_come`` names the claims not reported yet, and the first line says so.
    """
    passed = sum(r.passed for r in reports)
    pending = f" so far; {len(to_come)} to come ({', '.join(to_come)})" if to_come else ""
    flows = {json.dumps(r.config.get("run", {}).get("flow")) for r in reports if r.config.get("run", {}).get("flow")}
    stepper = f", gradient flow {', '.join(sorted(flows))}" if flows else ""
    lines = [f"# dichotomy validation report ({scale} scale, {backend} backend{stepper})", "",
             f"{passed} of {len(reports)} claims pass{pending}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".", "",
             "| claim | verdict | checks passed | compute seconds |", "|---|---|---|---|"]
    for r in reports:
        lines.append(f"| [{r.name}](#{r.name}) {r.title} | {'PASS' if r.passed else '**FAIL**'} | "
                     f"{sum(c.passed for c in r.checks)}/{len(r.checks)} | {r.seconds:.0f} |")
    for r in reports:
        lines += ["", f"## {r.name}", "", f"**{r.title}.** {r.claim}", ""]
        lines += [f"![{r.name}]({fig.relative_to(fig.parents[1]).as_posix()})" for fig in r.figures]
        lines += ["", "| check | prediction | predicted | measured | tolerance | verdict |",
                  "|---|---|---|---|---|---|"]
        for c in r.checks:
            lines.append(f"| {_cell(c.name)} | {_cell(c.prediction)} | {_fmt(c.predicted)} | {_fmt(c.measured)} | "
                         f"{_cell(c.tolerance)} | {'pass' if c.passed else '**FAIL**'} |")
        if r.notes:
            lines += [""] + [f"- {n}" for n in r.notes]
        lines += ["", f"Verdict: **{'PASS' if r.passed else 'FAIL'}**. Config: `{json.dumps(r.config)}`"]
    return "\n".join(lines) + "\n"


def write(reports: list[ClaimReport], out: Path, scale: str, backend: str,
          to_come: list[str] = ()) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.json`` into ``out`` (``to_come``: the claims still running or queued)."""
    md = files.write_text(out / "report.md", markdown(reports, scale, backend, list(to_come)))
    doc = {"scale": scale, "backend": backend, "versions": versions(),
           "passed": all(r.passed for r in reports), "to_come": list(to_come),
           "claims": {r.name: {"title": r.title, "claim": r.claim, "passed": r.passed, "seconds": r.seconds,
                               "reused": r.reused, "config": r.config, "notes": r.notes,
                               "figures": [f.name for f in r.figures],
                               "checks": [check_to_json(c) for c in r.checks]} for r in reports}}
    js = files.write_json(out / "report.json", doc)
    return md, js


def markers(scale: str, flow: bool = False) -> tuple[str, str]:
    """The comments that delimit the report of ``scale`` (through the gradient flow: ``scale-flow``) in a docs file.

    The file is docs/validation.md for quick and docs/validation-paper.md for paper.
    """
    key = f"{scale}-flow" if flow else scale
    return f"<!-- validate:{key}:start -->", f"<!-- validate:{key}:end -->"


def check_docs(docs: Path, scale: str, flow: bool = False) -> str:
    """The text of ``docs`` after checking it has the section :func:`write_docs` fills.

    A ConfigError if not, so that ``validate --docs`` fails before any claim is computed.
    """
    try:
        text = Path(docs).read_text()
    except OSError as e:
        raise errors.ConfigError(f"cannot read the docs file {docs}: {e.strerror or e}") from None
    start, end = markers(scale, flow)
    if start not in text or end not in text:
        raise errors.ConfigError(f"{docs} has no {start} ... {end} section to fill")
    return text


def write_docs(reports: list[ClaimReport], scale: str, backend: str, docs: Path, flow: bool = False) -> Path:
    """Put the report between the markers of ``docs`` (docs/validation.md), its figures beside it.

    The figures go in a folder named after it (``validation/NAME.png``, ``NAME-flow.png`` through the flow); the
    report's own headings move one level down.
    """
    text = check_docs(docs, scale, flow)
    figures = docs.parent / docs.stem
    suffix = "-flow" if flow else ""
    for r in reports:
        for fig in r.figures:
            files.atomic_write(figures / f"{r.name}{suffix}.png", lambda f, src=fig: f.write(src.read_bytes()))
    body = markdown(reports, scale, backend).split("\n", 1)[1]  # drop the report's title
    body = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 1) + " ", body, flags=re.M)
    body = re.sub(r"\]\((\w+)/figure\.png\)", rf"]({docs.stem}/\1{suffix}.png)", body)
    if flow:  # the GD report in the same file has these headings: the flow's get their own anchors
        body = re.sub(r"^(#+ \w+)$", r"\1 (flow)", body, flags=re.M)
        body = re.sub(r"\]\(#(\w+)\)", r"](#\1-flow)", body)
    start, end = markers(scale, flow)
    start_at, end_at = text.index(start) + len(start), text.index(end)
    files.write_text(docs, text[:start_at] + "\n" + body.strip() + "\n" + text[end_at:])
    return docs
