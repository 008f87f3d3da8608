"""The output folder of one ``defectgan generate`` run, and its resume records.

An item counts as finished when its record ``OUT/.progress/<name>.json`` exists (written last,
after its image and mask); ``OUT/.progress/run.json`` holds the settings of the run, and a resume
with other settings is refused, naming them. Every file is written atomically; a write that
fails (a full disk) is one error naming the file and leaves no part of the item behind.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_defectgan.data.image_io import write_image
from anomalib_defectgan.errors import DefectGanError, OutputExistsError, summarize
from anomalib_defectgan.utils.atomic import atomic_write_text

PROGRESS = ".progress"
OUTPUT_NAMES = ("good", "defect", "masks", PROGRESS, "manifest.csv", "contact_sheet.png")
TEMPORARY = ".*.tmp*"  # the names of :func:`~anomalib_defectgan.utils.atomic.atomic_path`'s temporary files


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Report a failed write of ``path`` as one line naming it (a full disk as such)."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DefectGanError(f"cannot write {path}: the disk is full ({err.strerror}); free space and rerun "
                                 "to resume") from err
        raise DefectGanError(f"cannot write {path}: {err.strerror or err}") from err


def _debris(path: Path) -> bool:
    """Whether ``path`` is a temporary file or a folder of nothing else (a run that failed before run.json)."""
    if path.is_dir():
        return all(_debris(p) for p in path.iterdir())
    return fnmatch.fnmatch(path.name, TEMPORARY)


def _change(key: str, previous: dict[str, Any], settings: dict[str, Any]) -> str:
    def show(values: dict[str, Any]) -> str:
        return json.dumps(values[key]) if key in values else "unset"

    return f"different {key}: {show(previous)} before, {show(settings)} now"


class GenerateStore:
    """OUT of a ``defectgan generate`` run: ``good/``, ``defect/``, ``masks/``, ``.progress/``.

    Args:
        out: The output folder (need not exist yet).
    """

    def __init__(self, out: Path) -> None:
        self.out = out

    def good_path(self, name: str) -> Path:
        """Where the PNG copy of good image ``name`` goes."""
        return self.out / "good" / f"{name}.png"

    def defect_path(self, name: str) -> Path:
        """Where item ``name``'s synthetic defect image goes."""
        return self.out / "defect" / f"{name}.png"

    def mask_path(self, name: str) -> Path:
        """Where item ``name``'s mask goes."""
        return self.out / "masks" / f"{name}_mask.png"

    def record_path(self, name: str) -> Path:
        """Item ``name``'s record: it exists once the item is finished."""
        return self.out / PROGRESS / f"{name}.json"

    @property
    def run_file(self) -> Path:
        """The settings of the run."""
        return self.out / PROGRESS / "run.json"

    def claim(self, settings: dict[str, Any], overwrite: bool) -> bool:
        """Check OUT is writable and belongs to this run; returns whether this call created it.

        Raises:
            DefectGanError: OUT cannot be written.
            OutputExistsError: OUT holds other files, or a run with other settings (without ``overwrite``).
        """
        out = self.out
        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=out, prefix=".probe."):
                pass
        except OSError as err:
            if created and out.is_dir():
                out.rmdir()
            raise DefectGanError(f"output folder {out} is not writable ({err.strerror or err})") from err
        foreign = [p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES]
        if foreign or not (self.run_file.is_file() or all(_debris(p) for p in out.iterdir())):
            raise OutputExistsError(f"{out} is not empty and was not written by 'defectgan generate' "
                                    f"({summarize(foreign or [p.name for p in out.iterdir()])}); choose another --out")
        if self.run_file.is_file() and not overwrite:
            previous = json.loads(self.run_file.read_text())
            changed = sorted(k for k in set(settings) | set(previous) if previous.get(k) != settings.get(k))
            if changed:
                raise OutputExistsError(f"{out} holds a run with other settings "
                                        f"({'; '.join(_change(k, previous, settings) for k in changed)}); "
                                        "rerun with the same options to resume, or pass --overwrite")
        return created

    def start(self, settings: dict[str, Any], overwrite: bool) -> None:
        """Remove stale temporary files of a killed run (``overwrite``: every earlier output); write run.json."""
        out = self.out
        if overwrite:
            for name in OUTPUT_NAMES:
                path = out / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        for folder in (out, *(out / n for n in ("good", "defect", "masks", PROGRESS))):
            if folder.is_dir():
                for stale in folder.glob(TEMPORARY):
                    stale.unlink()
        with writing(self.run_file):
            atomic_write_text(self.run_file, json.dumps(settings, indent=1, sort_keys=True))

    def write_good(self, name: str, pixels: np.ndarray) -> None:
        """Write good image ``name`` unless an earlier run did."""
        target = self.good_path(name)
        if not target.is_file():
            with writing(target):
                write_image(target, pixels)

    def is_finished(self, name: str) -> bool:
        """Whether item ``name`` has its record (and so its image and mask)."""
        return self.record_path(name).is_file()

    def write_item(self, name: str, image: np.ndarray, mask: np.ndarray, record: dict[str, Any]) -> None:
        """Write an item's image, mask and (last) record; a failed write removes the item's files."""
        files = (self.defect_path(name), self.mask_path(name))
        try:
            for path, pixels in zip(files, (image, mask), strict=True):
                with writing(path):
                    write_image(path, pixels)
            with writing(self.record_path(name)):
                atomic_write_text(self.record_path(name), json.dumps(record, sort_keys=True))
        except DefectGanError:
            for path in files:
                path.unlink(missing_ok=True)
            raise

    def records(self, names: Sequence[str]) -> dict[int, dict[str, Any]]:
        """The record of every finished item, by its index in ``names``."""
        return {i: json.loads(self.record_path(name).read_text()) for i, name in enumerate(names)
                if self.is_finished(name)}
