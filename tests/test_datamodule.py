"""DefectDataModule: batch shapes, sampling roles, determinism, vocabularies, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from anomalib_defectgan.data import DefectDataModule
from anomalib_defectgan.data.batch import GanBatch
from anomalib_defectgan.errors import DefectGanError, ManifestError
from tests.helpers import write_blob_dataset


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_blob_dataset(tmp_path / "data", size=48)


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_shapes_dtypes_and_roles(manifest: Path, channels: int) -> None:
    dm = DefectDataModule(str(manifest), crop_size=32, channels=channels, batch_size=4, goods_per_batch=3)
    dm.setup()
    assert dm.classes == ["good", "line", "spot"] and dm.grades == ["bright", "dark"]
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, GanBatch)
    for part, size in ((batch.donor, 4), (batch.canvas, 4), (batch.good, 3)):
        assert part.image.shape == (size, channels, 32, 32) and part.image.dtype == torch.float32
        assert part.mask.shape == (size, 1, 32, 32)
        assert part.image.min() >= 0.0 and part.image.max() <= 1.0
        assert set(part.mask.unique().tolist()) <= {0.0, 1.0}
        assert part.defect_class.dtype == torch.long and part.grade.dtype == torch.long
    assert (batch.donor.defect_class > 0).all(), "donors are defects"
    assert (batch.donor.mask.flatten(1).sum(1) > 0).all(), "donor crops are centred on their defect"
    assert (batch.canvas.defect_class == 0).all() and (batch.good.defect_class == 0).all()
    assert batch.canvas.mask.sum() == 0 and batch.good.mask.sum() == 0
    assert (batch.donor.mask_kind == 2).all() and (batch.canvas.mask_kind == 0).all()


_FIRST_BATCHES = """
import sys
import torch
from anomalib_defectgan.data import DefectDataModule

manifest, out = sys.argv[1], sys.argv[2]
batches = {}
for epoch, workers in ((0, 0), (0, 2), (1, 0)):
    dm = DefectDataModule(manifest, crop_size=32, batch_size=4, num_workers=workers, seed=3,
                          multiprocessing_context="spawn" if workers else None)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    batch = next(iter(loader))
    batches[f"donor_e{epoch}_w{workers}"] = batch.donor.image.clone()
    batches[f"canvas_e{epoch}_w{workers}"] = batch.canvas.image.clone()
    del batch, loader
torch.save(batches, out)
"""


def test_batches_are_deterministic_and_change_with_epoch(manifest: Path, tmp_path: Path) -> None:
    # DataLoader worker processes are started only in a child process: in the pytest process they
    # crashed the interpreter (exit 139) more than once in CI, through torch's SIGCHLD handler and
    # worker shared memory next to OpenVINO's threads from other tests. A crash in the child fails
    # this test with the child's stderr instead of ending the whole suite.
    out = tmp_path / "batches.pt"
    done = subprocess.run([sys.executable, "-c", _FIRST_BATCHES, str(manifest), str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"child exited {done.returncode}:\n{done.stderr[-3000:]}"
    b = torch.load(out, weights_only=True)
    donor_a, donor_b = b["donor_e0_w0"], b["donor_e0_w2"]
    assert torch.equal(donor_a, donor_b), f"donors differ by up to {(donor_a - donor_b).abs().max():.4g}"
    canvas_a, canvas_b = b["canvas_e0_w0"], b["canvas_e0_w2"]
    assert torch.equal(canvas_a, canvas_b), f"canvases differ by up to {(canvas_a - canvas_b).abs().max():.4g}"
    assert not torch.equal(donor_a, b["donor_e1_w0"])


def test_val_batch_is_fixed(manifest: Path) -> None:
    dm = DefectDataModule(str(manifest), crop_size=32, val_samples=5)
    one, two = next(iter(dm.val_dataloader())), next(iter(dm.val_dataloader()))
    assert one.donor.image.shape[0] == 5
    assert torch.equal(one.donor.image, two.donor.image)


def test_rolling_flips_never_turn_a_horizontal_line(manifest: Path) -> None:
    dm = DefectDataModule(str(manifest), crop_size=48, batch_size=8, flips="rolling", steps_per_epoch=4)
    line = dm.classes.index("line")
    for batch in dm.train_dataloader():
        masks = batch.donor.mask[batch.donor.defect_class == line, 0]
        for mask in masks:
            rows, cols = mask.sum(1), mask.sum(0)
            assert (cols > 0).sum() > (rows > 0).sum(), "horizontal lines stay horizontal"


def test_small_images_are_upscaled_to_the_crop(manifest: Path) -> None:
    dm = DefectDataModule(str(manifest), crop_size=64, batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch.donor.image.shape[-2:] == (64, 64)


def test_grade_filters(manifest: Path) -> None:
    dm = DefectDataModule(str(manifest), crop_size=32, exclude_grades=["dark"])
    dm.setup()
    assert dm.grades == ["bright"]
    assert set(dm.frame["grade"]) == {"bright"}
    held_out = DefectDataModule(str(manifest), crop_size=32, exclude_defect_grades=["dark"])
    held_out.setup()
    kept = held_out.frame[held_out.frame["grade"] == "dark"]
    assert len(kept) > 0 and (kept["label"] == "good").all(), "a new grade keeps its goods, loses its defects"
    with pytest.raises(ManifestError, match="include_grades"):
        DefectDataModule(str(manifest), crop_size=32, include_grades=["nope"]).setup()


def test_vocabulary_from_checkpoint_must_cover_the_data(manifest: Path) -> None:
    ok = DefectDataModule(str(manifest), crop_size=32, classes=["good", "line", "spot", "extra"])
    assert ok.classes == ["good", "line", "spot", "extra"]
    with pytest.raises(DefectGanError, match=r"classes \['spot'\].*lacks"):
        DefectDataModule(str(manifest), crop_size=32, classes=["good", "line"]).setup()


def test_manifest_without_goods_or_defects_is_refused(manifest: Path) -> None:
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    frame[frame["label"] == "defect"].to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match="no good images"):
        DefectDataModule(str(manifest), crop_size=32).setup()


def test_bad_arguments_are_clear(manifest: Path) -> None:
    with pytest.raises(DefectGanError, match="multiple of 8"):
        DefectDataModule(str(manifest), crop_size=30)
    with pytest.raises(DefectGanError, match="flips"):
        DefectDataModule(str(manifest), flips="diagonal")
    with pytest.raises(DefectGanError, match="unknown split"):
        DefectDataModule(str(manifest), train_splits=["training"])
