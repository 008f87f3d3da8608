"""``defectgan benchmark transfer-fidelity``: paintings scored against the same defect rendered on the new grade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anomalib_defectgan.benchmark import transfer_fidelity
from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.data.synthetic_steel import CLASSES
from tests.test_generators_support import make_tiny_generator


def test_report_ranks_paintings_by_their_distance_to_the_truth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["benchmark", "transfer-fidelity", "--size", "64", "--per-class", "1", "--window", "32",
                "--out", str(tmp_path / "tf")]) == 0
    printed = capsys.readouterr().out
    assert "| **all** |" in printed and "composite matched error" in printed
    result = json.loads((tmp_path / "tf" / "results.json").read_text())
    overall = result["overall"]
    assert set(overall) == {"cutpaste", "nsa", "composite paste", "composite residual", "composite adaptive",
                            "composite matched"}
    assert len(result["rows"]) == 6 * 3 * len(CLASSES), "one row per painting, class and donor grade"
    assert overall["composite matched"]["error"] < 0.85 * min(overall["composite residual"]["error"],
                                                              overall["composite paste"]["error"])
    assert overall["composite residual"]["saliency"] < overall["cutpaste"]["saliency"]
    assert not any(p.name.startswith("pairs_") for p in (tmp_path / "tf").iterdir()), "rendered pairs cleaned up"


def test_score_is_zero_for_the_truth_and_one_for_nothing_painted() -> None:
    canvas = torch.zeros(1, 1, 8, 8)
    truth = canvas.clone()
    truth[..., 2:4, 2:6] = 0.5
    region = truth > 0
    assert transfer_fidelity.score(truth, canvas, truth, region) == pytest.approx(([0.0], [1.0]))
    assert transfer_fidelity.score(canvas, canvas, truth, region) == pytest.approx(([1.0], [0.0]))
    assert transfer_fidelity.score(2 * truth, canvas, truth, region) == pytest.approx(([1.0], [2.0]))


def test_an_untrained_gan_scores_as_its_composite(tmp_path: Path) -> None:
    """An untrained composite-path G is the identity of its composite: same windows, same scores."""
    generator = make_tiny_generator(tmp_path / "gen", classes=tuple(CLASSES), defect_path="composite",
                                    composite_mode="matched")
    frame = transfer_fidelity.run(tmp_path, size=64, per_class=1, window=32, generator=str(generator),
                                  transfer={"min_change": 0.0})
    gan = frame[frame["painting"] == "defectgan"].reset_index(drop=True)
    matched = frame[frame["painting"] == "composite matched"].reset_index(drop=True)
    assert len(gan) == 3 * len(CLASSES)
    assert torch.allclose(torch.tensor(gan["error"].to_numpy()), torch.tensor(matched["error"].to_numpy()), atol=2e-3)


def test_bad_options_are_one_clear_error(tmp_path: Path) -> None:
    from anomalib_defectgan.errors import DefectGanError

    with pytest.raises(DefectGanError, match="unknown steel-world grade 'tin'"):
        transfer_fidelity.run(tmp_path, new_grade="tin")
    with pytest.raises(DefectGanError, match="--window 256 must be between 16 and the image size 128"):
        transfer_fidelity.run(tmp_path, window=256)


def test_paint_windows_refuses_windows_of_another_size_or_bad_donors(tmp_path: Path) -> None:
    from anomalib_defectgan.generators import DefectTransferGenerator
    from tests.test_generators_support import make_bank

    generator = make_tiny_generator(tmp_path / "gen", defect_path="composite")
    painter = DefectTransferGenerator(generator, make_bank(tmp_path / "bank"), cache_dir=tmp_path / "codes")
    with pytest.raises(ValueError, match=r"windows must be \[N, C, 32, 32\], got \(1, 1, 48, 48\)"):
        painter.paint_windows(torch.rand(1, 1, 48, 48), [0])
    with pytest.raises(ValueError, match=r"need one bank index in \[0, 6\) per window"):
        painter.paint_windows(torch.rand(2, 1, 32, 32), [0, 6])
    painted, mask = painter.paint_windows(torch.rand(2, 1, 32, 32) * 0.1 + 0.45, [0, 1])
    assert painted.shape == (2, 1, 32, 32) and (mask.flatten(1).sum(1) > 0).all()
