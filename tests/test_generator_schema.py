"""``generator.json`` is checked key by key before a network is built from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_gan import load_generator
from tests.test_generators_support import make_tiny_generator


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_generator(tmp_path_factory.mktemp("schema") / "gen")


def _edited(tiny: Path, tmp_path: Path, edit: dict[str, Any], config_edit: dict[str, Any] | None = None) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(tiny, folder)
    meta = json.loads((folder / "generator.json").read_text())
    meta.update(edit)
    meta["config"].update(config_edit or {})
    (folder / "generator.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize(("edit", "config_edit", "message"), [
    ({"crop_size": 1e9}, None, "crop_size must be an integer, got 1000000000.0"),
    ({"crop_size": 10**9}, None, "crop_size is 1000000000, expected 8..4096"),
    ({"crop_size": -64}, None, "crop_size is -64, expected"),
    ({"crop_size": 36}, None, "crop_size 36 is not a multiple of the code stride 8"),
    ({}, {"base_channels": 10**7}, "config.base_channels is 10000000, expected 1..1024"),
    ({}, {"base_channels": "8"}, "config.base_channels must be an integer"),
    ({}, {"mask_bias": float("nan")}, "config.mask_bias is nan"),
    ({}, {"composite_mode": "ratio"}, "config.composite_mode is 'ratio', expected one of"),
    ({}, {"canvas_skip": 1}, "config.canvas_skip must be true or false"),
    ({}, {"widths": [8, 16]}, "config key 'widths' is not a DefectGan setting"),
    ({}, {"max_channels": 4}, "config.max_channels 4 is below config.base_channels 8"),
    ({"classes": ["good", "scratch"]}, None, "config.num_classes 3 does not match the 2 classes"),
    ({"classes": ["good", "good", "spot"]}, None, "classes must hold at least 2 distinct names"),
    ({"grades": []}, None, "grades must hold at least 1 distinct names"),
    ({"channels": 3}, None, "channels 3 and config.channels 1 must agree"),
    ({"critic": {"file": "critic.safetensors", "width": 0}}, None, "critic.width is 0"),
    ({}, {"base_channels": 4, "max_channels": 16}, ("weights do not match generator.json .*is \\[.*\\] in "
                                                     "the weights, \\[.*\\] by the config")),
])
def test_bad_values_are_named(tiny: Path, tmp_path: Path, edit: dict[str, Any], config_edit: dict[str, Any] | None,
                              message: str) -> None:
    with pytest.raises(DefectGanError, match=message):
        load_generator(_edited(tiny, tmp_path, edit, config_edit))


def test_missing_key_is_named(tiny: Path, tmp_path: Path) -> None:
    folder = _edited(tiny, tmp_path, {})
    meta = json.loads((folder / "generator.json").read_text())
    del meta["crop_size"]
    (folder / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(DefectGanError, match="the key 'crop_size' is missing"):
        load_generator(folder)


def test_the_written_generator_passes(tiny: Path) -> None:
    assert load_generator(tiny).crop_size == 32
