"""The end of a ``defectgan generate`` run: ``manifest.csv`` and the contact sheet, from the items' records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_defectgan.data.image_io import read_image, write_image
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.generation.store import GenerateStore, writing

SHEET_ITEMS = 16


@dataclass
class GenerateResult:
    """What a ``defectgan generate`` run wrote.

    Attributes:
        out: The output folder.
        manifest: Its ``manifest.csv``.
        defects: Synthetic defect images written.
        goods: Good images copied.
        left_out: Items whose mask came out empty (no image written; a rerun retries them).
    """

    out: Path
    manifest: Path
    defects: int
    goods: int
    left_out: list[str] = field(default_factory=list)


def write_outputs(store: GenerateStore, kind: str, grade: str, split: str, good_names: dict[Path, str],
                  names: list[str]) -> GenerateResult:
    """Write the manifest and contact sheet from every finished item's record.

    Args:
        store: The run's output folder.
        kind: The generator's kind (the manifest's ``source`` is ``defectgan-generate:<kind>``).
        grade: Grade written to every row.
        split: Split written to every row.
        good_names: Each good image's name in ``good/``.
        names: Every item's name.

    Raises:
        DefectGanError: No item has a record (every mask came out empty), or a write failed.
    """
    records = store.records(names)
    failed = [name for i, name in enumerate(names) if i not in records]  # every other item was just painted
    if not records:
        raise DefectGanError(f"the generator painted no defect: all {len(failed)} masks were empty (an untrained "
                             "or barely trained checkpoint? try a lower --mask-threshold); no manifest written")
    manifest = store.out / "manifest.csv"
    with writing(manifest):
        _write_manifest(store, kind, grade, split, good_names, names, records)
    with writing(store.out / "contact_sheet.png"):
        _contact_sheet(store, [names[i] for i in sorted(records)])
    return GenerateResult(store.out, manifest, len(records), len(good_names), failed)


def _write_manifest(store: GenerateStore, kind: str, grade: str, split: str, good_names: dict[Path, str],
                    names: list[str], records: dict[int, dict[str, Any]]) -> None:
    import pandas as pd

    from anomalib_defectgan.data.manifest import write_manifest

    source = f"defectgan-generate:{kind}"
    rows = [{"image_path": str(store.good_path(name)), "mask_path": "", "label": "good", "defect_class": "good",
             "grade": grade, "split": split, "source": source, "mask_kind": "none",
             "normal_path": str(path.resolve())} for path, name in good_names.items()]
    for i in sorted(records):
        record = records[i]
        rows.append({"image_path": str(store.defect_path(names[i])), "mask_path": str(store.mask_path(names[i])),
                     "label": "defect", "defect_class": record["defect_class"], "grade": grade, "split": split,
                     "source": source, "mask_kind": "pixel",
                     **{k: v for k, v in record.items() if k != "defect_class"}})
    write_manifest(pd.DataFrame(rows, dtype=object).fillna(""), store.out / "manifest.csv")


def _contact_sheet(store: GenerateStore, names: list[str]) -> None:
    import cv2

    tiles = []
    for name in names[:SHEET_ITEMS]:
        image = read_image(store.defect_path(name), channels=3)
        mask = read_image(store.mask_path(name), channels=1)[..., 0] >= 128
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        image = cv2.drawContours(np.array(image), contours, -1, (255, 0, 0), 1)
        tiles.append(cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA))
    if not tiles:
        return
    cols = min(4, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * 130, cols * 130, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * 130 + 1:r * 130 + 129, c * 130 + 1:c * 130 + 129] = tile
    write_image(store.out / "contact_sheet.png", sheet)
