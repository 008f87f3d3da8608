"""Shared adapter helpers, the format registry and ``defectgan import-dataset``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalib_defectgan import cli
from anomalib_defectgan.data.datasets import FORMATS, get_adapter
from anomalib_defectgan.data.datasets.common import (
    DatasetError,
    assign_splits,
    background_tile_origins,
    tile_origins,
)
from anomalib_defectgan.data.image_io import write_image
from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.errors import DefectGanError


def test_splits_are_stratified_seeded_and_independent_of_order() -> None:
    groups = [f"{c}_{i}" for c in "ab" for i in range(20)]
    strata = [g[0] for g in groups]
    splits = assign_splits(groups, strata, seed=0)
    for stratum in "ab":
        counts = [
            sum(1 for g, s in splits.items() if g[0] == stratum and s == name)
            for name in ("train", "val", "test")
        ]
        assert counts == [14, 3, 3]
    assert assign_splits(groups[::-1], strata[::-1], seed=0) == splits
    assert assign_splits(groups, strata, seed=1) != splits
    assert set(assign_splits(["x"], ["a"]).values()) == {"train"}  # a lone image trains
    with pytest.raises(DatasetError, match="summing to 1"):
        assign_splits(groups, strata, fractions=(0.5, 0.5, 0.5))


def test_tile_origins_cover_the_length() -> None:
    assert tile_origins(1600, 256) == [0, 256, 512, 768, 1024, 1280, 1344]
    assert tile_origins(4096, 256) == list(range(0, 4096, 256))
    assert tile_origins(100, 256) == []


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(4, 20), st.integers(1, 6))
def test_background_tiles_avoid_the_mask_and_each_other(seed: int, tile: int, count: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((60, 70)) < 0.002
    origins = background_tile_origins(mask, tile, count, key="img", seed=seed)
    assert len(origins) <= count
    assert origins == background_tile_origins(mask, tile, count, key="img", seed=seed)
    for i, (x, y) in enumerate(origins):
        assert 0 <= x <= 70 - tile and 0 <= y <= 60 - tile
        assert not mask[y : y + tile, x : x + tile].any()
        for x2, y2 in origins[i + 1 :]:
            assert abs(x - x2) >= tile or abs(y - y2) >= tile


def test_unknown_format_lists_the_known_ones() -> None:
    assert set(FORMATS) == {"neu-det", "sd-saliency", "severstal", "ksdd2", "aitex"}
    assert all(callable(get_adapter(name).to_manifest) for name in FORMATS)
    with pytest.raises(
        DefectGanError,
        match="unknown dataset format 'voc'; known formats: neu-det, sd-saliency, severstal, ksdd2, aitex",
    ):
        get_adapter("voc")


def _ksdd2(root: Path) -> Path:
    for i in range(6):
        write_image(root / "train" / f"{i}.png", np.full((20, 10), 90, np.uint8))
        gt = np.zeros((20, 10), np.uint8)
        gt[3:6, 2:4] = 255 if i < 2 else 0
        write_image(root / "train" / f"{i}_GT.png", gt)
    return root


def test_cli_imports_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _ksdd2(tmp_path / "src")
    code = cli.main(
        [
            "import-dataset",
            "--format",
            "ksdd2",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--grade",
            "coil",
            "--split",
            "0.5,0.5,0",
            "--seed",
            "4",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "6 rows: 4 good, 2 defect" in text and "coil" in text
    frame = read_manifest(tmp_path / "out")
    assert set(frame["grade"]) == {"coil"}
    assert frame["split"].value_counts().to_dict() == {"train": 3, "val": 3}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "pascal"], "unknown dataset format 'pascal'; known formats: neu-det"),
        (["--format", "ksdd2", "--tile-size", "64"], "--tile-size does not apply to format ksdd2"),
        (["--format", "ksdd2", "--root", "nowhere"], "nowhere: dataset root is not a folder"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    root = _ksdd2(tmp_path / "src")
    argv = ["import-dataset", "--root", str(root), "--out", str(tmp_path / "out"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_warns_when_a_requested_split_ends_up_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _ksdd2(tmp_path / "src")
    argv = ["import-dataset", "--format", "ksdd2", "--root", str(root), "--out", str(tmp_path / "out"),
            "--split", "0.9,0.05,0.05"]
    assert cli.main(argv) == 0
    frame = read_manifest(tmp_path / "out")
    counts = frame["split"].value_counts()
    missing = [split for split in ("val", "test") if counts.get(split, 0) == 0]
    assert missing, "six images at 0.9,0.05,0.05 leave val or test empty"
    err = capsys.readouterr().err
    assert f"split(s) {', '.join(missing)} of" in err and "hold no row" in err and "--split" in err


def test_cli_is_quiet_about_a_split_asked_to_be_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _ksdd2(tmp_path / "src")
    argv = ["import-dataset", "--format", "ksdd2", "--root", str(root), "--out", str(tmp_path / "out"),
            "--split", "0.5,0.5,0"]
    assert cli.main(argv) == 0
    assert "hold no row" not in capsys.readouterr().err
