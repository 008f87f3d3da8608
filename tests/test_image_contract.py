"""data/image_contract: the one luminance rule, the one channel rule, the generator-output check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_defectgan.data.image_contract import (
    GREY_WEIGHTS,
    GeneratorContractError,
    check_generator_output,
    image_channels,
    to_channels,
)
from anomalib_defectgan.data.image_io import read_image
from anomalib_defectgan.errors import ImageReadError


def _save(path: Path, array: np.ndarray, mode: str) -> Path:
    Image.fromarray(array).convert(mode).save(path)
    return path


def test_luminance_is_the_one_read_image_uses(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = _save(tmp_path / "colour.png", rgb, "RGB")
    grey_file = read_image(path, channels=1)[..., 0].astype(np.float32)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    grey_tensor = to_channels(tensor, 1)[0, 0].numpy()
    assert np.abs(grey_file - grey_tensor).max() <= 0.5 + 1e-3, "PIL rounds; the weights are the same"
    assert GREY_WEIGHTS == (0.299, 0.587, 0.114)
    assert to_channels(to_channels(tensor, 1), 3).shape == (1, 3, 16, 16)
    assert to_channels(tensor, 3) is tensor


def test_image_channels_looks_at_the_pixels_not_the_file_mode(tmp_path: Path) -> None:
    grey = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    grey_as_rgb = [_save(tmp_path / f"g{i}.png", grey, "RGB") for i in range(3)]
    assert image_channels(grey_as_rgb) == (1, str(grey_as_rgb[0]))
    colour = np.stack([grey, grey, 255 - grey], axis=-1)
    last = _save(tmp_path / "c.png", colour, "RGB")
    assert image_channels([*grey_as_rgb, last]) == (3, str(last))


def test_image_channels_passes_over_unreadable_images(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = _save(tmp_path / "good.png", np.zeros((4, 4), np.uint8), "L")
    assert image_channels([broken, good]) == (1, str(good))
    with pytest.raises(ImageReadError, match="broken.png"):
        image_channels([broken])
    with pytest.raises(ValueError, match="no images"):
        image_channels([])


@pytest.mark.parametrize(("output", "message"), [
    ("not a pair", r"must return \(augmented, mask\)"),
    ((np.zeros((2, 1, 4, 4)), torch.zeros(2, 1, 4, 4)), "must return tensors"),
    ((torch.zeros(2, 1, 4, 3), torch.zeros(2, 1, 4, 4)), "images of shape"),
    ((torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4)), "a mask of shape"),
    ((torch.full((2, 1, 4, 4), float("nan")), torch.zeros(2, 1, 4, 4)), "NaN or infinite"),
    ((torch.full((2, 1, 4, 4), 2.0), torch.zeros(2, 1, 4, 4)), r"pixels in \[2, 2\]"),
    ((torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)), "values other than 0 and 1"),
])
def test_generator_output_check_names_the_generator_and_the_problem(output, message: str) -> None:
    with pytest.raises(GeneratorContractError, match=f"generator Toy .*{message}"):
        check_generator_output("Toy", torch.zeros(2, 1, 4, 4), output)


def test_generator_output_check_passes_a_valid_pair() -> None:
    images, mask = torch.rand(2, 3, 4, 4), torch.ones(2, 1, 4, 4)
    augmented, checked = check_generator_output("Toy", images, (images, mask))
    assert augmented is images and checked is mask
