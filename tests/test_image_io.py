"""Robust image reading: odd formats are converted, broken files are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_defectgan.data.image_io import read_image, read_mask, write_image
from anomalib_defectgan.errors import ImageReadError


def test_rgba_palette_16bit_and_grey_alpha_are_converted(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 7)])).save(tmp_path / "rgba.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    Image.fromarray(np.dstack([grey, np.full_like(grey, 9)]), mode="LA").save(tmp_path / "la.png")
    for name in ("rgba", "palette", "sixteen", "la"):
        one = read_image(tmp_path / f"{name}.png", channels=1)
        three = read_image(tmp_path / f"{name}.png", channels=3)
        assert one.shape == (8, 64, 1) and one.dtype == np.uint8, name
        assert three.shape == (8, 64, 3), name
        assert np.abs(one[..., 0].astype(int) - grey).max() <= 1, name


def test_corrupt_and_missing_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageReadError, match="broken.png: cannot decode"):
        read_image(broken)
    with pytest.raises(ImageReadError, match="absent.png: file not found"):
        read_image(tmp_path / "absent.png")


def test_mask_size_mismatch_names_the_mask(tmp_path: Path) -> None:
    write_image(tmp_path / "m.png", np.ones((10, 12), bool))
    assert read_mask(tmp_path / "m.png", (10, 12)).all()
    with pytest.raises(ImageReadError, match=r"m.png: mask size 12x10 differs from its image 20x20"):
        read_mask(tmp_path / "m.png", (20, 20))


def test_write_is_byte_deterministic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    write_image(tmp_path / "a.png", pixels)
    write_image(tmp_path / "b.png", pixels)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    write_image(tmp_path / "p.png", np.zeros((4, 4), np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "p.png").stat().st_mode) == 0o666 & ~umask
