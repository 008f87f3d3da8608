"""Adapters that turn public (or in-house, same-format) datasets into a manifest.

Each adapter module exposes ``to_manifest(root, out, **options) -> pandas.DataFrame``; this
package maps the format names used by ``defectgan import-dataset --format`` to them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from anomalib_defectgan.errors import DefectGanError

FORMATS: dict[str, str] = {
    "neu-det": "neu_det",
    "sd-saliency": "sd_saliency",
    "severstal": "severstal",
    "ksdd2": "ksdd2",
    "aitex": "aitex",
}


def get_adapter(name: str) -> ModuleType:
    """The adapter module of a format name.

    Raises:
        DefectGanError: Unknown format; the message lists the known ones.
    """
    if name not in FORMATS:
        raise DefectGanError(f"unknown dataset format {name!r}; known formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"{__name__}.{FORMATS[name]}")


def to_manifest(format: str, root: str | Path, out: str | Path, **options: Any) -> pd.DataFrame:
    """Import ``root`` in ``format`` into ``out`` (see each adapter's ``to_manifest``)."""
    return get_adapter(format).to_manifest(root, out, **options)


__all__ = ["FORMATS", "get_adapter", "to_manifest"]
