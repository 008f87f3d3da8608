"""Severstal adapter: run-length encoding and both train.csv formats, on tiny files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from anomalib_defectgan.data.datasets import severstal
from anomalib_defectgan.data.datasets.common import DatasetError
from anomalib_defectgan.data.image_io import read_image, read_mask, write_image

H, W, TILE = 64, 160, 32  # tiles at x = 0, 32, 64, 96, 128 and y = 0, 32


def test_rle_hand_checked_example() -> None:
    # 4x3 image, 1-based column-major: "2 2" = column 0 rows 1-2; "9 3" = column 2 rows 0-2.
    expected = np.array([[0, 0, 1], [1, 0, 1], [1, 0, 1], [0, 0, 0]], dtype=np.uint8)
    decoded = severstal.rle_decode("2 2 9 3", height=4, width=3)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, expected)
    assert severstal.rle_encode(expected) == "2 2 9 3"
    assert severstal.rle_encode(np.zeros((4, 3))) == ""
    assert not severstal.rle_decode("", 4, 3).any()
    assert severstal.rle_decode("1 1", 256, 1600).shape == (256, 1600)  # Severstal's size by default


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 1)))
def test_rle_decode_inverts_encode(mask: np.ndarray) -> None:
    rle = severstal.rle_encode(mask)
    np.testing.assert_array_equal(severstal.rle_decode(rle, *mask.shape), mask)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), max_size=8))
def test_rle_encode_inverts_decode(gaps_and_lengths: list[tuple[int, int]]) -> None:
    # A canonical encoding: increasing starts separated by at least one pixel.
    runs, position = [], 0
    for gap, length in gaps_and_lengths:
        start = position + gap + 1 if runs else position + gap
        runs.append((start, length))
        position = start + length - 1
    rle = " ".join(f"{s} {n}" for s, n in runs)
    assert severstal.rle_encode(severstal.rle_decode(rle, 10, 10)) == rle


@pytest.mark.parametrize(
    ("rle", "problem"),
    [
        ("1 2 3", "odd number"),
        ("1 x", "non-integer"),
        ("0 2", ">= 1"),
        ("3 0", ">= 1"),
        ("5 2 1 1", "overlaps"),
        ("5 2 6 1", "overlaps"),
        ("11 3", "ends past the 3x4 image"),
    ],
)
def test_rle_decode_rejects_bad_encodings(rle: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        severstal.rle_decode(rle, 3, 4)


def _dataset(root: Path, combined: bool) -> dict[str, dict[int, np.ndarray]]:
    """a.jpg: class 1 (tile 0,0) and class 3 (tiles 64..128 at y 32); b.jpg good; c.jpg class 2."""
    rng = np.random.default_rng(0)
    masks = {
        "a.jpg": {1: np.zeros((H, W), np.uint8), 3: np.zeros((H, W), np.uint8)},
        "b.jpg": {},
        "c.jpg": {2: np.zeros((H, W), np.uint8)},
    }
    masks["a.jpg"][1][2:10, 3:9] = 1
    masks["a.jpg"][3][40:50, 70:140] = 1
    masks["a.jpg"][3][40:41, 60:62] = 1  # 2 px of class 3 in the tile at x=32: class 3 still wins there
    masks["c.jpg"][2][0:64, 150:152] = 1  # only in the last, right-aligned tile (x=128)
    for name in masks:
        write_image(root / "train_images" / name, rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    lines = ["ImageId_ClassId,EncodedPixels" if combined else "ImageId,ClassId,EncodedPixels"]
    for name, per_class in masks.items():
        for class_id in range(1, 5):
            rle = severstal.rle_encode(per_class[class_id]) if class_id in per_class else ""
            if combined:
                lines.append(f"{name}_{class_id},{rle}")
            elif rle:
                lines.append(f"{name},{class_id},{rle}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return masks


@pytest.mark.parametrize("combined", [True, False], ids=["ImageId_ClassId", "ImageId-ClassId"])
def test_both_csv_formats_give_tiles_whose_masks_match_the_runs(tmp_path: Path, combined: bool) -> None:
    masks = _dataset(tmp_path / "src", combined)
    frame = severstal.to_manifest(tmp_path / "src", tmp_path / "out", tile_size=TILE, seed=3)
    assert len(frame) == 3 * 2 * 5
    assert set(frame["mask_kind"]) == {"pixel", "none"}
    assert (frame.groupby("origin_path")["split"].nunique() == 1).all()  # an image's tiles share a split
    for row in frame.itertuples():
        name = Path(row.origin_path).name
        x, y = int(row.tile_x), int(row.tile_y)
        union = sum(masks[name].values(), np.zeros((H, W), np.uint8))[y : y + TILE, x : x + TILE] > 0
        source = read_image(row.origin_path)[y : y + TILE, x : x + TILE]
        np.testing.assert_array_equal(read_image(row.image_path), source)
        if row.label == "good":
            assert not union.any() and row.mask_path == ""
        else:
            np.testing.assert_array_equal(read_mask(row.mask_path), union)
    defects = frame[frame["label"] == "defect"].set_index(["tile_x", "tile_y"], drop=False)
    by_tile = {
        (Path(r.origin_path).name, r.tile_x, r.tile_y): r.defect_class
        for r in frame.itertuples()
        if r.label == "defect"
    }
    assert by_tile == {
        ("a.jpg", "0", "0"): "class_1",
        ("a.jpg", "32", "32"): "class_3",
        ("a.jpg", "64", "32"): "class_3",
        ("a.jpg", "96", "32"): "class_3",
        ("a.jpg", "128", "32"): "class_3",
        ("c.jpg", "128", "0"): "class_2",
        ("c.jpg", "128", "32"): "class_2",
    }
    assert len(defects) == 7


def test_both_csv_formats_give_the_same_manifest(tmp_path: Path) -> None:
    _dataset(tmp_path / "old", combined=True)
    _dataset(tmp_path / "new", combined=False)
    old = severstal.to_manifest(tmp_path / "old", tmp_path / "o1", tile_size=TILE)
    new = severstal.to_manifest(tmp_path / "new", tmp_path / "o2", tile_size=TILE)
    columns = ["label", "defect_class", "split", "tile_x", "tile_y"]
    assert old[columns].equals(new[columns])


def _write(root: Path, csv_text: str, images: tuple[str, ...] = ("a.jpg",)) -> Path:
    for name in images:
        write_image(root / "train_images" / name, np.zeros((H, W), np.uint8))
    (root / "train.csv").write_text(csv_text)
    return root


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 5\na.jpg,2\n", r"train.csv:3: expected 3 fields, got 2"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,x,1 5\n", r"train.csv:2: bad image id / class id"),
        ("ImageId_ClassId,EncodedPixels\na.jpg_1,1 5\na.jpg_0,\n", r"train.csv:3: bad image id / class id"),
        (
            "ImageId,ClassId,EncodedPixels\na.jpg,1,1 5\na.jpg,1,9 2\n",
            r"train.csv:3: a.jpg class 1 listed twice",
        ),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 5 7\n", r"train.csv:2: a.jpg class 1: odd number"),
        (
            "ImageId,ClassId,EncodedPixels\n\na.jpg,4,99999 5\n",
            r"train.csv:3: a.jpg class 4: run 99999 5 ends past the 64x160 image",
        ),
        ("Image,Class,Pixels\n", r"train.csv:1: unknown header"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path: Path, csv_text: str, message: str) -> None:
    root = _write(tmp_path / "src", csv_text)
    with pytest.raises(DatasetError, match=message):
        severstal.to_manifest(root, tmp_path / "out", tile_size=TILE)
    assert not (tmp_path / "out").exists()  # nothing written before the input is known to be good


def test_byte_order_mark_is_accepted_and_binary_content_is_an_error(tmp_path: Path) -> None:
    root = _write(tmp_path / "src", "\ufeffImageId,ClassId,EncodedPixels\na.jpg,2,1 5\n")
    assert (
        severstal.to_manifest(root, tmp_path / "out", tile_size=TILE)["defect_class"]
        .tolist()
        .count("class_2")
        == 1
    )
    (root / "train.csv").write_bytes(b"ImageId,ClassId,EncodedPixels\na.jpg,1,1 5\n\xff\xfe\x00\x81\n")
    with pytest.raises(DatasetError, match=r"train.csv: unreadable after line"):
        severstal.to_manifest(root, tmp_path / "out2", tile_size=TILE)


def test_missing_images_are_counted_and_named(tmp_path: Path) -> None:
    rows = "".join(f"m{i}.jpg,1,1 5\n" for i in range(7))
    root = _write(tmp_path / "src", "ImageId,ClassId,EncodedPixels\na.jpg,1,1 5\n" + rows)
    with pytest.raises(
        DatasetError, match=r"missing, 7: m0.jpg, m1.jpg, m2.jpg, m3.jpg, m4.jpg, \.\.\. \(2 more\)"
    ):
        severstal.to_manifest(root, tmp_path / "out", tile_size=TILE)


def test_not_a_severstal_folder(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(DatasetError, match="expected train.csv and train_images"):
        severstal.to_manifest(tmp_path / "src", tmp_path / "out")
