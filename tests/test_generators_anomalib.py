"""The generators inside anomalib: DRAEM's augmenter, GLASS's augmentor, synthetic val/test splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.data import ImageBatch

from anomalib_defectgan.generators import CutPasteGenerator
from tests.test_generators_support import make_bank, make_normals, make_tiny_generator


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bank(tmp_path_factory.mktemp("bank"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_generator(tmp_path_factory.mktemp("gen"))


def _generator(name: str, bank: Path, checkpoint: Path, cache: Path) -> torch.nn.Module:
    if name == "cutpaste":
        return CutPasteGenerator(bank, probability=1.0, seed=0)
    from anomalib_defectgan.generators import DefectTransferGenerator

    return DefectTransferGenerator(checkpoint, bank, probability=1.0, seed=0, cache_dir=cache)


@pytest.fixture(scope="module")
def draem(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    from anomalib.models import Draem

    dtd = tmp_path_factory.mktemp("dtd")  # an existing folder: no DTD download
    return Draem(dtd_dir=dtd)


@pytest.fixture(scope="module")
def glass() -> torch.nn.Module:
    from anomalib.models import Glass

    return Glass(input_shape=(32, 32), backbone="resnet18", pre_trained=False, layers=["layer2", "layer3"],
                 pretrain_embed_dim=64, target_embed_dim=64, step=1, discriminator_hidden=32)


@pytest.mark.parametrize("name", ["cutpaste", "defect_transfer"])
def test_draem_training_step_with_generator(draem: torch.nn.Module, bank: Path, checkpoint: Path, tmp_path: Path,
                                            name: str) -> None:
    draem.zero_grad()
    draem.augmenter = _generator(name, bank, checkpoint, tmp_path / "cache")
    images = torch.rand(2, 3, 32, 32)
    loss = draem.training_step(ImageBatch(image=images, gt_label=torch.zeros(2, dtype=torch.bool)))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(info is not None for info in draem.augmenter.last_info), "every image got a defect"
    grads = [p.grad for p in draem.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert not any("gan" in key for key in draem.state_dict()), "the GAN is not part of the host's weights"


@pytest.mark.parametrize("name", ["cutpaste", "defect_transfer"])
def test_glass_training_forward_with_generator(glass: torch.nn.Module, bank: Path, checkpoint: Path,
                                               tmp_path: Path, name: str) -> None:
    glass.zero_grad()
    glass.model.augmentor = _generator(name, bank, checkpoint, tmp_path / "cache")
    images = torch.rand(2, 3, 32, 32)
    glass.model.calculate_center([ImageBatch(image=images)], torch.device("cpu"))
    glass.model.train()
    *_, loss = glass.model(images)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(info is not None for info in glass.model.augmentor.last_info)


def test_synthetic_defect_dataset_from_folder(bank: Path, tmp_path: Path) -> None:
    from anomalib.data.datasets import FolderDataset

    from anomalib_defectgan.data import SyntheticDefectDataset

    make_normals(tmp_path / "root" / "good", count=6, size=40)
    normal = FolderDataset(name="steel", root=tmp_path / "root", normal_dir="good")
    generator = CutPasteGenerator(bank, probability=0.2, seed=0)
    synthetic = SyntheticDefectDataset.from_dataset(normal, generator, seed=0)
    assert generator.probability == 0.2, "the caller's generator is restored"
    samples = synthetic.samples
    assert len(samples) == 6 and (samples.label_index == 1).sum() == 3
    abnormal = samples.index[samples.label_index == 1][0]
    item = synthetic[int(abnormal)]
    assert item.gt_label and item.gt_mask.any() and item.image.shape == (3, 40, 40)
    root = synthetic.root
    del synthetic, item
    import gc

    gc.collect()
    assert not root.exists(), "temporary files are removed with the dataset"
