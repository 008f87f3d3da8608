"""NEU-DET adapter: the real copy (../shared/datasets/neu-det) and tiny VOC files written here."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from anomalib_defectgan.data.datasets import neu_det
from anomalib_defectgan.data.datasets.common import DatasetError, DatasetWarning
from anomalib_defectgan.data.image_io import read_image, read_mask, write_image
from anomalib_defectgan.errors import OutputExistsError
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = shared_dataset("neu-det")
    return neu_det.to_manifest(root, tmp_path_factory.mktemp("neu") / "out")


@pytest.mark.realdata
def test_real_neu_det_gives_1800_defect_rows_in_6_classes(real: pd.DataFrame) -> None:
    assert len(real) == 1800
    assert set(real["label"]) == {"defect"} and set(real["mask_kind"]) == {"box"}
    classes = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
    assert real["defect_class"].value_counts().to_dict() == dict.fromkeys(classes, 300)
    per_class = real.groupby(["defect_class", "split"]).size().unstack()
    assert (
        (per_class["train"] == 210).all()
        and (per_class["val"] == 45).all()
        and (per_class["test"] == 45).all()
    )
    # The images are used in place, not copied.
    images = (shared_dataset("neu-det") / "IMAGES").resolve()
    assert all(Path(p).resolve().parent == images for p in real["image_path"])


@pytest.mark.realdata
def test_real_neu_det_masks_cover_their_boxes_scaled_to_416(real: pd.DataFrame) -> None:
    annotations = shared_dataset("neu-det") / "ANNOTATIONS"
    for row in real.itertuples():
        mask = read_mask(row.mask_path)
        assert mask.shape == Image.open(row.image_path).size[::-1] == (416, 416)
        root = ET.parse(annotations / f"{Path(row.image_path).stem}.xml").getroot()
        scale = 416 / float(root.findtext("size/width"))
        allowed = np.zeros_like(mask)
        for box in root.iter("bndbox"):
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            # Every pixel strictly inside the scaled box is masked ...
            assert mask[
                math.ceil((ymin - 1) * scale) : math.floor(ymax * scale),
                math.ceil((xmin - 1) * scale) : math.floor(xmax * scale),
            ].all(), row.image_path
            allowed[
                max(0, math.floor((ymin - 1) * scale) - 1) : math.ceil(ymax * scale) + 1,
                max(0, math.floor((xmin - 1) * scale) - 1) : math.ceil(xmax * scale) + 1,
            ] = True
        # ... and nothing more than a pixel away from a box is.
        assert not (mask & ~allowed).any(), row.image_path
        assert row.defect_class == root.find("object/name").text


def _voc(path: Path, filename: str, boxes: list[tuple[str, int, int, int, int]], size: int = 20) -> None:
    objects = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        "</bndbox></object>\n"
        for n, a, b, c, d in boxes
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation>\n<filename>{filename}</filename>\n<size><width>{size}</width>"
        f"<height>{size}</height><depth>1</depth></size>\n{objects}</annotation>\n"
    )


def _kaggle_layout(root: Path) -> None:
    """train/ and validation/ folders, images 40 px with boxes in a 20 px frame."""
    rng = np.random.default_rng(0)
    for part, count in (("train", 10), ("validation", 3)):
        for cls in ("crazing", "scratches"):
            for i in range(count):
                stem = f"{cls}_{part}_{i}"
                write_image(
                    root / part / "images" / cls / f"{stem}.jpg",
                    rng.integers(0, 255, (40, 40), dtype=np.uint8),
                )
                _voc(
                    root / part / "annotations" / f"{stem}.xml",
                    f"{stem}.jpg",
                    [(cls, 1, 1, 5, 10), (cls, 15, 15, 20, 20)],
                )


def test_kaggle_layout_keeps_validation_as_test_and_cuts_background_tiles(tmp_path: Path) -> None:
    _kaggle_layout(tmp_path / "src")
    frame = neu_det.to_manifest(tmp_path / "src", tmp_path / "out", background_tiles=3, tile_size=8, seed=1)
    defects = frame[frame["label"] == "defect"]
    assert len(defects) == 26
    assert set(defects[defects["image_path"].str.contains("/validation/")]["split"]) == {"test"}
    assert defects[defects["image_path"].str.contains("/train/")]["split"].value_counts().to_dict() == {
        "train": 16,
        "val": 4,
    }  # 10 x 0.15 / 0.85 -> 2 per class
    mask = read_mask(defects["mask_path"].iloc[0])
    expected = np.zeros((40, 40), bool)
    expected[0:20, 0:10] = True  # box (1,1)-(5,10) in the 20 px frame, 1-based inclusive, x2
    expected[28:40, 28:40] = True
    np.testing.assert_array_equal(mask, expected)
    goods = frame[frame["label"] == "good"]
    assert len(goods) == 26 * 3 and set(goods["mask_path"]) == {""} and set(goods["mask_kind"]) == {"none"}
    for row in goods.itertuples():
        x, y = int(row.tile_x), int(row.tile_y)
        assert not expected[y : y + 8, x : x + 8].any()
        np.testing.assert_array_equal(
            read_image(row.image_path), read_image(row.origin_path)[y : y + 8, x : x + 8]
        )
        assert row.split == frame.set_index("image_path").at[row.origin_path, "split"]
    again = neu_det.to_manifest(tmp_path / "src", tmp_path / "out2", background_tiles=3, tile_size=8, seed=1)
    assert again[["split", "tile_x", "tile_y"]].equals(frame[["split", "tile_x", "tile_y"]])


def test_same_image_name_in_train_and_validation_is_an_error(tmp_path: Path) -> None:
    _kaggle_layout(tmp_path / "src")
    write_image(
        tmp_path / "src" / "validation" / "images" / "crazing" / "crazing_train_0.jpg",
        np.zeros((40, 40), np.uint8),
    )
    _voc(
        tmp_path / "src" / "validation" / "annotations" / "crazing_train_0.xml",
        "crazing_train_0.jpg",
        [("crazing", 1, 1, 2, 2)],
    )
    with pytest.raises(DatasetError, match=r"used in more than one folder, 1: crazing_train_0"):
        neu_det.to_manifest(tmp_path / "src", tmp_path / "out")


def _flat(root: Path, xml_text: str | None = None, stem: str = "crazing_1") -> Path:
    write_image(root / "IMAGES" / f"{stem}.jpg", np.zeros((40, 40), np.uint8))
    if xml_text is None:
        _voc(root / "ANNOTATIONS" / f"{stem}.xml", f"{stem}.jpg", [("crazing", 1, 1, 5, 5)])
    else:
        (root / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
        (root / "ANNOTATIONS" / f"{stem}.xml").write_text(xml_text)
    return root


@pytest.mark.parametrize(
    ("xml_text", "message"),
    [
        (
            "<annotation>\n<size><width>20</width>\n<height>20</height></size>\n<object>\n</annotation>",
            r"crazing_1.xml:5: malformed XML \(mismatched tag\)",
        ),
        (
            (
                "<annotation>\n<size><width>20</width><height>20</height></size>\n<object><name>c</name><bndbox>\n"
                "<xmin>1</xmin>\n<ymin>one</ymin><xmax>3</xmax><ymax>3</ymax></bndbox></object></annotation>"
            ),
            r"crazing_1.xml:5: <ymin> is not a number: 'one'",
        ),
        (
            "<annotation>\n<filename>x</filename>\n</annotation>",
            r"crazing_1.xml:1: <annotation> has no <size>",
        ),
        (
            (
                "<annotation><size><width>20</width><height>20</height></size>\n<object><name>c</name>\n"
                "<bndbox><xmin>9</xmin><ymin>1</ymin><xmax>3</xmax><ymax>3</ymax></bndbox></object></annotation>"
            ),
            r"crazing_1.xml:3: inverted box",
        ),
        (
            "<annotation><size><width>20</width><height>20</height></size>\n<object>\n<bndbox/></object></annotation>",
            r"crazing_1.xml:2: <object> has no <name>",
        ),
    ],
)
def test_malformed_xml_names_file_and_line(tmp_path: Path, xml_text: str, message: str) -> None:
    root = _flat(tmp_path / "src", xml_text)
    with pytest.raises(DatasetError, match=message):
        neu_det.to_manifest(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_images_are_counted_and_named(tmp_path: Path) -> None:
    root = _flat(tmp_path / "src")
    for i in range(3):
        _voc(root / "ANNOTATIONS" / f"gone_{i}.xml", f"gone_{i}.jpg", [("crazing", 1, 1, 5, 5)])
    with pytest.raises(
        DatasetError,
        match=r"image\(s\) referenced by annotations missing, 3: gone_0.jpg, gone_1.jpg, gone_2.jpg",
    ):
        neu_det.to_manifest(root, tmp_path / "out")


def test_empty_annotation_is_good_and_unannotated_image_is_skipped(tmp_path: Path) -> None:
    root = _flat(tmp_path / "src")
    _voc(root / "ANNOTATIONS" / "clean_1.xml", "clean_1.jpg", [])
    write_image(root / "IMAGES" / "clean_1.jpg", np.zeros((40, 40), np.uint8))
    write_image(root / "IMAGES" / "lonely.jpg", np.zeros((40, 40), np.uint8))
    with pytest.warns(DatasetWarning, match="without annotation, 1: lonely.jpg"):
        frame = neu_det.to_manifest(root, tmp_path / "out")
    assert frame.set_index("defect_class")["label"].to_dict() == {"good": "good", "crazing": "defect"}


def test_unknown_layout_and_non_empty_output(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="expected IMAGES/ \\+ ANNOTATIONS/"):
        neu_det.to_manifest(tmp_path / "empty", tmp_path / "out")
    root = _flat(tmp_path / "src")
    neu_det.to_manifest(root, tmp_path / "out")
    with pytest.raises(OutputExistsError, match="not empty"):
        neu_det.to_manifest(root, tmp_path / "out")
    assert len(neu_det.to_manifest(root, tmp_path / "out", overwrite=True)) == 1
