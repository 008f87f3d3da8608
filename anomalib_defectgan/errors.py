"""Errors the user can act on. The CLI prints them as one line instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class DefectGanError(Exception):
    """Base class of every error caused by bad input or configuration."""


class FileProblemError(DefectGanError):
    """A named file cannot be used; the message is ``<path>: <problem>``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ImageReadError(FileProblemError):
    """An image or mask file cannot be read or decoded."""


class ManifestError(DefectGanError):
    """A manifest is malformed or refers to files that do not exist."""


class OutputExistsError(DefectGanError):
    """The output folder exists with other content and overwriting was not asked for."""


class CheckpointError(FileProblemError):
    """A checkpoint file is missing, unreadable, or not one the command can use."""


class TrainingDivergedError(DefectGanError):
    """A training loss became NaN or infinite; training was stopped at that step.

    Args:
        step: The step whose losses were not finite (the ``step`` column of ``metrics.csv``).
        terms: Names of the non-finite loss terms, the headline term first.
        kind: ``"nan"``, ``"inf"`` or ``"nan/inf"``.
        checkpoint: The last checkpoint written before the divergence, or None when there is none.
    """

    def __init__(self, step: int, terms: list[str], kind: str, checkpoint: str | Path | None) -> None:
        self.step = step
        self.terms = list(terms)
        self.kind = kind
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        others = [repr(term) for term in terms[1:]]
        also = f" (also non-finite, {summarize(others)})" if others else ""
        kept = f"Last good checkpoint: {checkpoint}" if checkpoint else "No checkpoint was written yet."
        super().__init__(f"loss {terms[0]!r} is {kind} at step {step}{also}; training stopped. {kept}")


def summarize(items: list[str], limit: int = 5) -> str:
    """Return ``'N: a, b, c, ...'`` for error messages about many offending items."""
    head = ", ".join(str(item) for item in items[:limit])
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)}: {head}{more}"
