"""generators/factory.build_generator: one kind, one generator, everywhere; bad options are one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.data.utils.generators import PerlinAnomalyGenerator

from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.generators import CutPasteGenerator, DefectTransferGenerator
from anomalib_defectgan.generators.cut_paste import NSA_SETTINGS
from anomalib_defectgan.generators.factory import GENERATOR_KINDS, build_generator
from tests.test_generators_support import make_bank, make_tiny_generator


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bank(tmp_path_factory.mktemp("factory") / "bank", per_class=2)


def test_every_kind_builds_its_generator(bank: Path, tmp_path: Path) -> None:
    assert GENERATOR_KINDS == ("perlin", "cutpaste", "nsa", "defectgan")
    assert isinstance(build_generator("perlin"), PerlinAnomalyGenerator)
    paste = build_generator("cutpaste", bank, seed=1, classes=["scratch"])
    assert isinstance(paste, CutPasteGenerator) and paste.blend == "feather" and paste.probability == 1.0
    nsa = build_generator("nsa", bank, seed=1)
    assert nsa.blend == NSA_SETTINGS["blend"] and nsa.scale_jitter == NSA_SETTINGS["scale_jitter"]
    gan = build_generator("defectgan", bank, make_tiny_generator(tmp_path / "gen"), seed=1, probability=0.5,
                          transfer={"window": 48, "mask_source": "gan"})
    assert isinstance(gan, DefectTransferGenerator) and gan.probability == 0.5
    assert gan.window == 48 and gan.mask_source == "gan"


def test_the_same_options_paint_the_same_defects(bank: Path) -> None:
    images = torch.full((2, 1, 40, 40), 0.4)
    first, again = (build_generator("nsa", bank, seed=3)(images) for _ in range(2))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.parametrize(("kind", "kwargs", "message"), [
    ("stylegan", {}, "unknown generator 'stylegan'"),
    ("cutpaste", {}, "give it a defect bank"),
    ("defectgan", {"defect_bank": "BANK"}, "needs a trained generator"),
    ("cutpaste", {"defect_bank": "BANK", "probability": 2.0}, r"probability must be in \[0, 1\]"),
])
def test_bad_options_are_one_clear_error(bank: Path, kind: str, kwargs: dict, message: str) -> None:
    kwargs = {k: bank if v == "BANK" else v for k, v in kwargs.items()}
    with pytest.raises(DefectGanError, match=message):
        build_generator(kind, **kwargs)
