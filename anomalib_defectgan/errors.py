"""Errors the user can act on. The CLI prints them as one line instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class DefectGanError(Exception):
    """Base class of every error caused by bad input or configuration."""


class ImageReadError(DefectGanError):
    """An image or mask file cannot be read or decoded."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ManifestError(DefectGanError):
    """A manifest is malformed or refers to files that do not exist."""


class OutputExistsError(DefectGanError):
    """The output folder exists with other content and overwriting was not asked for."""


def summarize(items: list[str], limit: int = 5) -> str:
    """Return ``'N: a, b, c, ...'`` for error messages about many offending items."""
    head = ", ".join(str(item) for item in items[:limit])
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)}: {head}{more}"
