"""The procedural steel world: the embedded default dataset (docs/design.md, "Data").

:func:`make_synthetic_steel` renders an MVTec-like folder per grade plus one ``manifest.csv``::

    DIR/manifest.csv
    DIR/<grade>/train/good/000.png
    DIR/<grade>/test/good/000.png
    DIR/<grade>/test/<class>/000.png
    DIR/<grade>/ground_truth/<class>/000_mask.png      (0/255)

so anomalib's ``Folder`` (or ``MVTecAD(root=DIR, category=<grade>)``) reads one grade directly.
Everything is a pure function of the seed: the same arguments give byte-identical files. The
rendering itself lives in :mod:`anomalib_defectgan.data.steel_world`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from anomalib_defectgan.data.image_io import write_image
from anomalib_defectgan.data.manifest import read_manifest, write_manifest
from anomalib_defectgan.data.steel_world.defects import DEFECTS
from anomalib_defectgan.data.steel_world.grades import GRADES
from anomalib_defectgan.data.steel_world.render import MASK_THRESHOLD, render_defect, render_good
from anomalib_defectgan.errors import DefectGanError, OutputExistsError

__all__ = [
    "CLASSES",
    "GRADE_NAMES",
    "MASK_THRESHOLD",
    "SOURCE",
    "HeldOutGrade",
    "defect_split_counts",
    "good_split_counts",
    "make_synthetic_steel",
]

SOURCE = "synthetic_steel"
GRADE_NAMES: tuple[str, ...] = tuple(GRADES)
CLASSES: tuple[str, ...] = tuple(DEFECTS)
MIN_SIZE = 32


def defect_split_counts(count: int) -> tuple[int, int, int]:
    """How many of ``count`` defect instances go to (train, val, test): about 60/20/20.

    From 3 instances on, val and test get at least one each; with fewer, all go to train.
    """
    if count < 3:
        return count, 0, 0
    val = test = max(1, round(0.2 * count))
    return count - val - test, val, test


def good_split_counts(count: int) -> tuple[int, int]:
    """How many of ``count`` good images per grade go to (train/good, test/good): about 80/20.

    From 2 images on, test/good gets at least one.
    """
    test = 0 if count < 2 else max(1, round(0.2 * count))
    return count - test, test


def _check_names(given: Sequence[str] | None, known: tuple[str, ...], what: str, plural: str) -> list[str]:
    if given is None:
        return list(known)
    chosen = list(dict.fromkeys(given))  # drop repeats, keep order
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise DefectGanError(f"unknown {what} {', '.join(map(repr, unknown))}; known {plural}: {', '.join(known)}")
    if not chosen:
        raise DefectGanError(f"no {what} selected; known {plural}: {', '.join(known)}")
    return chosen


@dataclass(frozen=True)
class _Job:
    """One good image, or one defect instance rendered onto ``onto`` (1 grade, or 2 when paired)."""

    grade: str
    defect_class: str
    index: int
    split: str
    stem: str
    onto: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeldOutGrade:
    """More test renderings of one grade (a benchmark's new grade), the other grades unchanged.

    The first ``per_class`` defects and ``good_per_grade`` good images of the grade are rendered
    and split as for every grade; the further ones (the next instance indices) all go to the test
    split, so every training image, donor and validation carve-out stays byte-identical (the
    further defects are not rendered onto a ``paired`` partner grade; the grade's file names get
    a digit wider only beyond 999 images of a kind).

    Attributes:
        grade: The grade that gets more test images.
        per_class: Defect instances per class rendered on it in all (at least ``per_class``).
        goods: Good test images of it in all (at least the usual fifth of ``good_per_grade``).
    """

    grade: str
    per_class: int
    goods: int


def _jobs(grades: list[str], classes: list[str], per_class: int, good_per_grade: int, paired: bool,
          held_out: HeldOutGrade | None = None) -> Iterator[_Job]:
    train_good, _ = good_split_counts(good_per_grade)
    train, val, _ = defect_split_counts(per_class)
    for position, grade in enumerate(grades):
        goods, defects = good_per_grade, per_class
        if held_out is not None and grade == held_out.grade:
            goods, defects = train_good + held_out.goods, held_out.per_class
        good_width, defect_width = max(3, len(str(goods))), max(3, len(str(defects)))
        for index in range(goods):
            number, split = (index, "train") if index < train_good else (index - train_good, "test")
            yield _Job(grade, "good", index, split, f"{number:0{good_width}d}")
        partner = grades[(position + 1) % len(grades)]
        for defect_class in classes:
            for index in range(defects):
                split = "train" if index < train else "val" if index < train + val else "test"
                onto = (grade, partner) if paired and index < per_class else (grade,)
                yield _Job(grade, defect_class, index, split, f"{index:0{defect_width}d}", onto)


def _run_job(job: _Job, root: Path, size: int, seed: int, channels: int) -> list[dict[str, str]]:
    """Render one job, write its files under ``root`` and return its manifest rows."""
    if job.defect_class == "good":
        sample = render_good(job.grade, size, seed, job.index, channels)
        folder = "train" if job.split == "train" else "test"
        path = root / job.grade / folder / "good" / f"{job.stem}.png"
        write_image(path, sample.image)
        return [_row(path, "", job.grade, "good", job.split, "")]
    samples = render_defect(job.defect_class, size, seed, job.index, list(job.onto), channels)
    pair_id = f"{job.grade}/{job.defect_class}/{job.stem}" if len(job.onto) > 1 else ""
    rows = []
    for sample in samples:
        # A partner rendering carries the owning grade in its name, so stems never collide.
        stem = job.stem if sample.grade == job.grade else f"{job.grade}_{job.stem}"
        image = root / sample.grade / "test" / job.defect_class / f"{stem}.png"
        mask = root / sample.grade / "ground_truth" / job.defect_class / f"{stem}_mask.png"
        write_image(image, sample.image)
        write_image(mask, sample.mask)
        rows.append(_row(image, mask, sample.grade, job.defect_class, job.split, pair_id))
    return rows


def _row(image: Path, mask: Path | str, grade: str, defect_class: str, split: str, pair_id: str) -> dict[str, str]:
    good = defect_class == "good"
    return {
        "image_path": str(image),
        "mask_path": str(mask),
        "label": "good" if good else "defect",
        "defect_class": defect_class,
        "grade": grade,
        "split": split,
        "source": SOURCE,
        "mask_kind": "none" if good else "pixel",
        "pair_id": pair_id,
    }


def _check_held_out_grade(held_out: HeldOutGrade, grades: list[str], per_class: int, good_per_grade: int) -> None:
    if held_out.grade not in grades:
        raise DefectGanError(f"held-out grade {held_out.grade!r} is not rendered; rendered grades: {', '.join(grades)}")
    _, test_good = good_split_counts(good_per_grade)
    if held_out.per_class < per_class or held_out.goods < test_good:
        raise DefectGanError(
            f"held-out grade {held_out.grade!r}: {held_out.per_class} defects per class and {held_out.goods} good "
            f"test images cannot be fewer than every grade's {per_class} and {test_good} "
            f"(per_class={per_class}, good_per_grade={good_per_grade})")


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out}: folder exists and is not empty; pass overwrite=True (--overwrite) "
                                    "to replace it, or choose another --out")
        here = Path.cwd().resolve()
        resolved = out.resolve()
        if resolved == Path(resolved.anchor) or resolved == Path.home().resolve() or resolved in (here, *here.parents):
            raise OutputExistsError(f"{out}: refusing to replace the file-system root, the home folder or the "
                                    "working directory (or one of its parents)")


def _replace_folder(staged: Path, out: Path) -> None:
    """Move the finished ``staged`` folder to ``out``, replacing what is there."""
    if not out.exists():
        os.replace(staged, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(staged, out)
    shutil.rmtree(old, ignore_errors=True)


def make_synthetic_steel(
    out: str | Path = "datasets/synthetic_steel",
    size: int = 256,
    per_class: int = 20,
    good_per_grade: int = 40,
    seed: int = 0,
    paired: bool = False,
    grades: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    channels: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    held_out: HeldOutGrade | None = None,
) -> pd.DataFrame:
    """Render the procedural steel world and write its manifest.

    The dataset is written into a hidden temporary sibling of ``out`` and renamed into place at
    the end, so an interrupted run leaves no partial dataset.

    Args:
        out: Output folder. It must not exist or be empty unless ``overwrite``.
        size: Image side in pixels (square images).
        per_class: Defect instances per grade and class.
        good_per_grade: Good images per grade (about 80% in ``train/good``, 20% in ``test/good``).
        seed: Everything is a pure function of the seed.
        paired: Also render each defect instance onto the next grade (in ``grades`` order,
            cyclically) with the same geometry; both rows share a ``pair_id``.
        grades: Grades to render (default: all of :data:`GRADE_NAMES`).
        classes: Defect classes to render (default: all of :data:`CLASSES`).
        channels: 1 (grey) or 3 (RGB with a faint per-grade tint).
        overwrite: Replace an existing non-empty ``out``.
        progress: Show a progress bar.
        held_out: Render more test images of one grade (see :class:`HeldOutGrade`); None: none.

    Returns:
        The manifest rows with absolute paths, as :func:`~anomalib_defectgan.data.manifest.read_manifest`
        returns them; extra columns ``mask_kind`` (pixel|none) and ``pair_id`` (empty unless paired).

    Raises:
        DefectGanError: Unknown grade or class names, or impossible sizes/counts.
        OutputExistsError: ``out`` exists with other content and ``overwrite`` is False.
    """
    grade_list = _check_names(grades, GRADE_NAMES, "grade", "grades")
    class_list = _check_names(classes, CLASSES, "class", "classes")
    if size < MIN_SIZE:
        raise DefectGanError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    if per_class < 1 or good_per_grade < 1:
        raise DefectGanError(f"per_class and good_per_grade must be at least 1, got {per_class} and {good_per_grade}")
    if channels not in (1, 3):
        raise DefectGanError(f"channels must be 1 or 3, got {channels}")
    if paired and len(grade_list) < 2:
        raise DefectGanError("paired=True renders each defect onto two grades: select at least two grades")
    if held_out is not None:
        _check_held_out_grade(held_out, grade_list, per_class, good_per_grade)
    out = Path(out)
    _check_output(out, overwrite)

    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        jobs = list(_jobs(grade_list, class_list, per_class, good_per_grade, paired, held_out))
        total = sum(len(job.onto) or 1 for job in jobs)  # a good job has no onto grades
        rows: list[dict[str, str]] = []
        with tqdm(total=total, desc="steel world", unit="img", disable=not progress) as bar:
            for job in jobs:
                new = _run_job(job, staged, size, seed, channels)
                rows += new
                bar.update(len(new))
        frame = pd.DataFrame(rows).sort_values(["grade", "image_path"], kind="stable", ignore_index=True)
        write_manifest(frame, staged / "manifest.csv")
        _replace_folder(staged, out)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return read_manifest(out / "manifest.csv")
