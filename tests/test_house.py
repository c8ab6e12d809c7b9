"""The shape of the house (docs/architecture.md): refimpl is the oracle, and every import arrow points down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"dichotomy": "dichotomy", "refimpl": "dichotomy.refimpl", "kernels": "dichotomy.kernels",
           "validation": "dichotomy.validation"}

# The layers, bottom up: a module may import its own layer and those below it, never one above.
LAYERS = ("errors signals _moved", "refimpl", "store", "run", "kernels", "peers diagnosis regime plots", "bench",
          "experiments", "validation", "cli", "__main__")
RANK = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms.split()}

# What the oracle may import: NumPy, SciPy, the two solvers its limits call, pure-Python stdlib helpers, its
# own modules and the exception classes. Never signals, files, threads, progress bars or install metadata.
# (os: limits/l1_programs.py points file descriptor 1 at os.devnull while HiGHS prints its banner.)
ORACLE_MAY_IMPORT = {"__future__", "collections", "dataclasses", "functools", "itertools", "math", "numbers", "os",
                     "sys", "types", "typing", "warnings", "numpy", "scipy", "cvxpy", "highspy", "dichotomy.errors"}


def modules() -> dict[str, Path]:
    """Every module of the package by import name, from the repository's folders."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """The absolute names ``name`` imports (module level and inside functions), relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def room(name: str) -> str:
    """The room of a package module: ``dichotomy.refimpl.limits.ntk`` -> refimpl, ``dichotomy.cli.train`` -> cli."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__main__"


def census() -> dict[str, set[str]]:
    """Which room imports which (the arrows of docs/architecture.md's picture)."""
    known, arrows = modules(), {}
    for name, path in known.items():
        targets = {room(t) for t in imports(name, path) if t in known and t != "dichotomy"}
        arrows.setdefault(room(name), set()).update(targets - {room(name)})
    return arrows


def test_every_room_has_a_layer():
    assert {room(m) for m in modules()} <= set(RANK) | {"__init__"}, sorted({room(m) for m in modules()} - set(RANK))


def test_every_arrow_points_down():
    upward = sorted(f"{src} -> {dst}" for src, dsts in census().items() for dst in dsts if RANK[dst] > RANK[src])
    assert not upward, upward


@pytest.mark.parametrize("name", [m for m in modules() if room(m) == "refimpl"])
def test_the_oracle_imports_only_math(name):
    path = modules()[name]
    allowed = ("dichotomy", "dichotomy.errors", "dichotomy.refimpl")
    bad = sorted(t for t in imports(name, path)
                 if t.split(".")[0] not in ORACLE_MAY_IMPORT and t not in allowed
                 and not t.startswith(("dichotomy.errors.", "dichotomy.refimpl.")))
    assert not bad, f"{name} imports {bad}: refimpl holds the math only (docs/architecture.md)"


def test_the_census_sees_the_arrows_it_checks():
    """The checks above would pass on an empty census: make sure it finds what is known to be there."""
    arrows = census()
    assert "refimpl" in arrows["run"] and "store" in arrows["run"] and "kernels" in arrows["experiments"]
    assert not arrows.get("refimpl", set()) - {"errors"}


# --- a fourth model --------------------------------------------------------------------------------------------

NAMES_A_MODEL = re.compile(r"import[^\n]*\b(diagonal_net|matrix_factorization|relu_mlp)\b|"
                           r"\"(diagonal-net|matrix-completion|relu-mlp)\"|\b(diagonal_net|matrix_factorization|relu_mlp)\.NAME")


def walkthrough() -> list[str]:
    """The places docs/architecture.md says a fourth model touches (paths; ``<stem>`` for the model's module)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- fourth-model -->")[1].split("<!-- /fourth-model -->")[0]
    return re.findall(r"`((?:refimpl|kernels|dichotomy|tests)/[^`]*)`", block)


def stems() -> list[str]:
    from dichotomy.refimpl.models import MODELS

    return [m.__name__.rsplit(".", 1)[1] for m in MODELS.values()]


def _listed(path: str, places: list[str]) -> bool:
    for place in places:
        for stem in stems():
            p = place.replace("<stem>", stem)
            if path == p or (p.endswith("/") and path.startswith(p)):
                return True
    return False


def test_only_the_listed_places_name_a_model():
    """A module outside the walkthrough that names a model is a per-model fact in the wrong place: move it into
    the model's module (or list the place in docs/architecture.md, if a fourth model really must touch it)."""
    places = walkthrough()
    assert len(places) >= 8, places
    naming = sorted(str(p.relative_to(ROOT)) for folder in ("refimpl", "kernels", "dichotomy")
                    for p in (ROOT / folder).rglob("*.py") if NAMES_A_MODEL.search(p.read_text()))
    assert "refimpl/models.py" in naming  # the census sees what it checks
    unlisted = [p for p in naming if not _listed(p, places)]
    assert not unlisted, unlisted


def test_every_listed_place_exists_for_every_model():
    for place in walkthrough():
        for stem in stems():
            assert (ROOT / place.replace("<stem>", stem)).exists(), (place, stem)
