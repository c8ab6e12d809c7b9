"""dichotomy presets: list the named experiments."""

from __future__ import annotations

from dichotomy.cli.common import EXIT_OK
from dichotomy.experiments import presets

NAME = "presets"


def add(command) -> None:
    """Add the command's parser (``command(name, summary, description)`` makes it)."""
    command("presets", "list the named experiments", "List the named experiments (presets) that train takes.")


def run(args) -> int:
    for name, p in presets.PRESETS.items():
        print(f"{name:12s} {p.model:18s} {p.steps:>11,d} steps  {p.description}")
    return EXIT_OK
