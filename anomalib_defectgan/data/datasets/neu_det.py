"""NEU-DET (Pascal VOC boxes) -> manifest with box masks.

Layouts accepted (folder names case-insensitive):

* ``ROOT/IMAGES/*.jpg`` + ``ROOT/ANNOTATIONS/*.xml`` (no official split: seeded split);
* ``ROOT/{train,validation}/images[/<class>]/*.jpg`` + ``ROOT/{train,validation}/annotations/*.xml``
  (the common Kaggle layout: ``validation`` becomes test, ``train`` is split into train and val).

An annotation belongs to the image with the same stem (or, failing that, the stem of its
``<filename>``). The mask is the union of all boxes, scaled from the ``<size>`` frame to the
image's real size (read from its header, the JPEG is not decoded): copies upscaled to 416 px
keep boxes in the 200 px frame. The row's class is the first ``<object>``'s name (in NEU-DET it
always matches the file name; 123 images hold boxes of further classes, listed in
``object_classes``). An annotation without objects is a good image.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np
import pandas as pd

from anomalib_defectgan.data.datasets.common import (
    DEFAULT_FRACTIONS,
    DatasetError,
    assign_splits,
    background_tile_origins,
    check_fractions,
    find_dir,
    finish,
    image_size,
    images_in,
    make_row,
    prepare_output,
    raise_if_missing,
    require_root,
    tile_name,
    train_val_fractions,
    warn,
)
from anomalib_defectgan.data.image_io import read_image, write_image
from anomalib_defectgan.data.manifest import GOOD_CLASS
from anomalib_defectgan.errors import summarize

SOURCE = "neu-det"


@dataclass
class Annotation:
    """One parsed VOC file: frame size and boxes ``(name, xmin, ymin, xmax, ymax)`` (1-based, inclusive)."""

    xml_path: Path
    filename: str
    width: int
    height: int
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)


def _parse_with_lines(path: Path) -> tuple[ET.Element, dict[int, int]]:
    """Parse XML keeping each element's line number (``{id(element): line}``)."""
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as err:
        raise DatasetError(f"{path}:{err.lineno}: malformed XML ({expat.ErrorString(err.code)})") from err
    return builder.close(), lines


def parse_annotation(path: Path) -> Annotation:
    """Read one Pascal VOC file.

    Raises:
        DatasetError: Malformed XML, missing or non-numeric ``<size>``/``<bndbox>`` values, or
            an inverted box; the message is ``file:line: problem``.
    """
    root, lines = _parse_with_lines(path)

    def number(parent: ET.Element, tag: str) -> float:
        child = parent.find(tag)
        if child is None:
            raise DatasetError(f"{path}:{lines[id(parent)]}: <{parent.tag}> has no <{tag}>")
        try:
            value = float((child.text or "").strip())
        except ValueError:
            raise DatasetError(
                f"{path}:{lines[id(child)]}: <{tag}> is not a number: {child.text!r}"
            ) from None
        if not math.isfinite(value):
            raise DatasetError(f"{path}:{lines[id(child)]}: <{tag}> is not finite: {child.text!r}")
        return value

    if root.tag != "annotation":
        raise DatasetError(f"{path}:{lines[id(root)]}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    if size is None:
        raise DatasetError(f"{path}:{lines[id(root)]}: <annotation> has no <size>")
    width, height = number(size, "width"), number(size, "height")
    if width < 1 or height < 1:
        raise DatasetError(f"{path}:{lines[id(size)]}: <size> must be positive, got {width:g}x{height:g}")
    annotation = Annotation(path, (root.findtext("filename") or "").strip(), int(width), int(height))
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(f"{path}:{lines[id(obj)]}: <object> has no <name>")
        if name == GOOD_CLASS:
            raise DatasetError(f"{path}:{lines[id(obj)]}: 'good' is reserved and cannot be a defect class")
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"{path}:{lines[id(obj)]}: <object> has no <bndbox>")
        xmin, ymin, xmax, ymax = (number(box, tag) for tag in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise DatasetError(
                f"{path}:{lines[id(box)]}: inverted box ({xmin:g},{ymin:g})-({xmax:g},{ymax:g})"
            )
        annotation.boxes.append((name, xmin, ymin, xmax, ymax))
    return annotation


def box_pixels(
    box: tuple[float, float, float, float], scale: tuple[float, float], shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Pixel window ``(x0, y0, x1, y1)`` (half-open) covering a 1-based inclusive VOC box after scaling.

    Args:
        box: ``(xmin, ymin, xmax, ymax)`` in the annotation frame.
        scale: ``(image_width / frame_width, image_height / frame_height)``.
        shape: ``(H, W)`` of the image, to clip to.
    """
    xmin, ymin, xmax, ymax = box
    sx, sy = scale
    x0 = max(0, math.floor((xmin - 1) * sx))
    y0 = max(0, math.floor((ymin - 1) * sy))
    x1 = min(shape[1], math.ceil(xmax * sx))
    y1 = min(shape[0], math.ceil(ymax * sy))
    return x0, y0, max(x0, x1), max(y0, y1)


def box_mask(annotation: Annotation, shape: tuple[int, int]) -> np.ndarray:
    """``bool [H, W]`` union of the annotation's boxes scaled to an image of ``shape`` (H, W)."""
    mask = np.zeros(shape, dtype=bool)
    scale = (shape[1] / annotation.width, shape[0] / annotation.height)
    for _, *box in annotation.boxes:
        x0, y0, x1, y1 = box_pixels(tuple(box), scale, shape)
        mask[y0:y1, x0:x1] = True
    return mask


def _find_layout(root: Path) -> list[tuple[Path, Path, str | None]]:
    """``[(images_dir, annotations_dir, official_split or None), ...]`` for the two layouts."""
    images, annotations = find_dir(root, ["IMAGES", "JPEGImages"]), find_dir(root, ["ANNOTATIONS"])
    if images and annotations:
        return [(images, annotations, None)]
    parts = []
    for names, split in ((["train"], "train"), (["validation", "val", "valid", "test"], "test")):
        part = find_dir(root, names)
        if part is None:
            continue
        images, annotations = (
            find_dir(part, ["images", "IMAGES"]),
            find_dir(part, ["annotations", "ANNOTATIONS"]),
        )
        if images and annotations:
            parts.append((images, annotations, split))
    if not parts:
        raise DatasetError(
            f"{root}: not a NEU-DET folder; expected IMAGES/ + ANNOTATIONS/ or "
            "train|validation/images/ + train|validation/annotations/"
        )
    return parts


def to_manifest(
    root: str | Path,
    out: str | Path,
    *,
    grade: str = "hot_rolled",
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    background_tiles: int = 0,
    tile_size: int = 64,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Import NEU-DET: one defect row per image, box mask materialised as PNG.

    Args:
        root: Dataset folder (either layout, see the module docstring).
        out: Output folder: ``masks/<class>/<stem>.png``, ``images/good/*.png`` (background
            tiles) and ``manifest.csv``. Source images are referenced by absolute path.
        grade: Grade (material) name written in every row.
        seed: Seed of the split (and of the background tile positions).
        fractions: ``(train, val, test)`` per class without an official split. With the
            train/validation layout, validation is test and train is split train:val in the
            ratio of the first two fractions.
        background_tiles: Good tiles to cut per image, fully outside every box (0: none; needs
            decoding the images).
        tile_size: Side of the background tiles in pixels.
        overwrite: Allow a non-empty ``out``.

    Returns:
        The manifest as written (absolute paths), with ``mask_kind`` = ``box`` (``none`` for
        good rows) and the extra columns ``origin_path``, ``tile_x``, ``tile_y``, ``object_classes``.

    Raises:
        DatasetError: Unknown layout, malformed XML (file and line), or annotations whose image
            is missing (count and first names).
    """
    root = require_root(root)
    fractions = check_fractions(fractions)
    if tile_size < 1 or background_tiles < 0:
        raise DatasetError(
            f"tile_size must be >= 1 and background_tiles >= 0, got {tile_size}, {background_tiles}"
        )
    out_dir = prepare_output(out, overwrite)

    items: list[tuple[Annotation, Path, str | None]] = []
    missing: list[str] = []
    unannotated: list[str] = []
    for images_dir, annotations_dir, official in _find_layout(root):
        images = {p.stem: p for p in images_in(images_dir, recursive=True)}
        used: set[str] = set()
        for xml_path in sorted(annotations_dir.glob("*.xml")):
            annotation = parse_annotation(xml_path)
            stem = xml_path.stem if xml_path.stem in images else Path(annotation.filename).stem
            if stem not in images:
                missing.append(annotation.filename or xml_path.stem)
                continue
            used.add(stem)
            items.append((annotation, images[stem], official))
        unannotated += [images[s].name for s in sorted(set(images) - used)]
    raise_if_missing(missing, "image(s) referenced by annotations", root)
    stems = [image.stem for _, image, _ in items]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1}) if len(set(stems)) < len(stems) else []
    if twice:
        raise DatasetError(f"{root}: image name(s) used in more than one folder, {summarize(twice)}")
    if unannotated:
        warn(f"{root}: skipped image(s) without annotation, {len(unannotated)}: {', '.join(unannotated[:5])}")

    def klass(annotation: Annotation) -> str:
        return annotation.boxes[0][0] if annotation.boxes else GOOD_CLASS

    keys = [str(image) for _, image, _ in items]
    free = [(k, klass(a)) for k, (a, _, official) in zip(keys, items) if official is None]
    splits = assign_splits([k for k, _ in free], [c for _, c in free], seed, fractions)
    official_train = [(k, klass(a)) for k, (a, _, official) in zip(keys, items) if official == "train"]
    train_val = train_val_fractions(fractions)
    splits |= assign_splits([k for k, _ in official_train], [c for _, c in official_train], seed, train_val)

    rows = []
    for key, (annotation, image, official) in zip(keys, items):
        split = "test" if official == "test" else splits[key]
        width, height = image_size(image)
        mask = box_mask(annotation, (height, width))
        name = klass(annotation)
        mask_path = None
        if name != GOOD_CLASS:
            mask_path = out_dir / "masks" / name / f"{image.stem}.png"
            write_image(mask_path, mask)
        row = make_row(image, mask_path, name, grade, split, SOURCE, "box", image)
        row["object_classes"] = ";".join(sorted({b[0] for b in annotation.boxes}))
        rows.append(row)
        if background_tiles:
            pixels = read_image(image, channels=1)[..., 0]
            for x, y in background_tile_origins(mask, tile_size, background_tiles, image.name, seed):
                tile_path = out_dir / "images" / GOOD_CLASS / tile_name(image.stem, x, y)
                write_image(tile_path, pixels[y : y + tile_size, x : x + tile_size])
                good = make_row(tile_path, None, GOOD_CLASS, grade, split, SOURCE, "none", image, (x, y))
                good["object_classes"] = ""
                rows.append(good)
    return finish(rows, out_dir, root)
