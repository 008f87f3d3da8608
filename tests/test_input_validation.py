"""Every generator entry refuses pixels outside the contract with a message that says the fix."""

from __future__ import annotations

import pytest
import torch

from anomalib_defectgan.data.augmented import SyntheticDefectGenerator
from anomalib_defectgan.data.image_contract import RANGE_TOLERANCE, check_pixel_range
from anomalib_defectgan.generators import CutPasteGenerator, DefectBank, DefectTransferGenerator
from tests.test_generators_support import make_bank, make_tiny_generator


def _bad(kind: str, channels: int = 1) -> torch.Tensor:
    images = torch.rand(2, channels, 32, 32)
    if kind == "nan":
        images[1, 0, 5, 7] = float("nan")
    elif kind == "inf":
        images[0, 0, 3, 3] = float("inf")
    elif kind == "255":
        images = images * 255
    elif kind == "negative":
        images = (images - 0.45) / 0.225
    return images


BAD = [("nan", "NaN"), ("inf", "infinite"), ("255", "up to 2.*divide by 255"),
       ("negative", "down to -[12].*before normalisation")]


@pytest.fixture(scope="module")
def generators(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("validation")
    bank = make_bank(root / "bank")
    return {"cutpaste": CutPasteGenerator(DefectBank(bank), probability=1.0, seed=0),
            "defectgan": DefectTransferGenerator(make_tiny_generator(root / "gen"), bank, probability=1.0, seed=0,
                                                 cache_dir=root / "cache")}


@pytest.mark.parametrize("name", ["cutpaste", "defectgan"])
@pytest.mark.parametrize(("kind", "message"), BAD)
def test_generators_refuse_pixels_outside_the_contract(generators: dict[str, object], name: str, kind: str,
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generators[name](_bad(kind))


@pytest.mark.parametrize("name", ["cutpaste", "defectgan"])
def test_generators_refuse_integer_and_empty_images(generators: dict[str, object], name: str) -> None:
    with pytest.raises(TypeError, match="floating point.*uint8"):
        generators[name]((torch.rand(1, 32, 32) * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="at least 1 pixel"):
        generators[name](torch.rand(2, 1, 0, 32))


@pytest.mark.parametrize("name", ["cutpaste", "defectgan"])
def test_resampling_overshoot_passes_and_is_left_alone_outside_the_defect(generators: dict[str, object],
                                                                         name: str) -> None:
    images = torch.rand(2, 1, 32, 32)
    images[0, 0, 0, 0] = 1 + RANGE_TOLERANCE / 2
    images[1, 0, 0, 0] = -RANGE_TOLERANCE / 2
    augmented, mask = generators[name](images)
    outside = mask.expand_as(images) == 0
    assert torch.equal(augmented[outside], images[outside])
    inside = ~outside
    assert augmented[inside].min() >= 0 and augmented[inside].max() <= 1


def test_datamodule_wrapper_checks_the_images_it_is_given(generators: dict[str, object]) -> None:
    wrapper = SyntheticDefectGenerator(generators["cutpaste"])
    with pytest.raises(ValueError, match="generator CutPasteGenerator hold values up to .*divide by 255"):
        wrapper(torch.rand(2, 3, 32, 32) * 255)
    augmented, mask = wrapper(torch.rand(2, 3, 32, 32))
    assert augmented.shape == (2, 3, 32, 32) and mask.shape == (2, 1, 32, 32)


def test_range_check_messages_and_empty_tensors() -> None:
    check_pixel_range(torch.rand(1, 1, 8, 8))
    check_pixel_range(torch.empty(0, 1, 8, 8))
    with pytest.raises(ValueError, match="values up to 700, .*scale them to \\[0, 1\\]"):
        check_pixel_range(torch.full((1, 4), 700.0))
    with pytest.raises(ValueError, match="^masks hold NaN"):
        check_pixel_range(torch.tensor([0.5, float("nan")]), "masks")
