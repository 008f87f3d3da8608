"""DefectAugmented: synthetic defects in training batches, real defects moved to train, synthetic splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.data.utils.generators import PerlinAnomalyGenerator
from torch import Tensor

from anomalib_defectgan.data.augmented import DefectAugmented, SyntheticDefectGenerator
from anomalib_defectgan.data.image_contract import GREY_WEIGHTS, GeneratorContractError
from anomalib_defectgan.errors import DefectGanError
from tests.defect_classifier_data import cut_paste, grade_folder, steel_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return steel_world(tmp_path_factory.mktemp("augmented") / "steel", good_per_grade=20)


def _batch(size: int = 8, real_defect: int = 1) -> ImageBatch:
    labels = torch.zeros(size, dtype=torch.bool)
    labels[real_defect] = True
    masks = torch.zeros(size, 32, 32, dtype=torch.bool)
    masks[real_defect, 4:8, 4:8] = True
    return ImageBatch(image=torch.rand(size, 3, 32, 32) * 0.5 + 0.25, gt_label=labels, gt_mask=masks)


class _Shift(torch.nn.Module):
    """Toy generator: brightens a square; records the inputs it was given."""

    def __init__(self, channels: int | None = None, fail_on_rgb: bool = False) -> None:
        super().__init__()
        if channels is not None:
            self.channels = channels
        self.fail_on_rgb = fail_on_rgb
        self.seen: list[tuple[int, ...]] = []
        self.last_input: Tensor | None = None

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        self.seen.append(tuple(images.shape))
        self.last_input = images
        if self.fail_on_rgb and images.shape[1] != 1:
            raise RuntimeError("this generator works on grey images only")
        mask = torch.zeros(images.shape[0], 1, *images.shape[-2:])
        mask[..., 10:20, 10:20] = 1
        return (images + 0.2 * mask).clamp(0, 1), mask


def test_synthetic_ratio_of_the_good_images_get_defects(world: Path) -> None:
    data = DefectAugmented(grade_folder(world), _Shift(), synthetic_ratio=0.5, seed=0)
    batch = _batch()
    original = batch.image.clone()
    out = data.augment_batch(batch)
    changed = (out.image != original).flatten(1).any(1)
    assert int(changed.sum()) == 4 and not changed[1], "4 of the 7 good images, never the real defect"
    assert out.gt_label[changed].all() and out.gt_label[1] and int(out.gt_label.sum()) == 5
    assert out.gt_mask[changed][:, 10:20, 10:20].all() and int(out.gt_mask[changed].sum()) == 4 * 100
    assert out.gt_mask[1, 4:8, 4:8].all() and int(out.gt_mask[1].sum()) == 16, "real mask kept"
    assert not out.gt_mask[~changed & ~out.gt_label].any()


def test_batches_are_augmented_only_while_training(world: Path) -> None:
    data = DefectAugmented(grade_folder(world), _Shift(), synthetic_ratio=1.0)
    batch = _batch()
    assert data.on_after_batch_transfer(batch, 0) is batch and not data.generator.generator.seen


def test_one_channel_generators_get_luminance(world: Path) -> None:
    declared = _Shift(channels=1)
    out = DefectAugmented(grade_folder(world), declared, synthetic_ratio=1.0).augment_batch(_batch())
    assert declared.seen == [(7, 1, 32, 32)] and out.image.shape == (8, 3, 32, 32)
    images = torch.rand(2, 3, 32, 32)
    wrapper = SyntheticDefectGenerator(declared)
    augmented, mask = wrapper(images)
    luminance = sum(w * images[:, c:c + 1] for c, w in enumerate(GREY_WEIGHTS))
    assert torch.allclose(declared.last_input, luminance, atol=1e-6), "ITU-R 601 luminance, not the channel mean"
    assert augmented.shape == (2, 3, 32, 32) and torch.equal(augmented[:, 0], augmented[:, 2])
    assert mask.shape == (2, 1, 32, 32)


def test_undeclared_grey_only_generator_fails_with_a_hint_not_a_fallback() -> None:
    grey_only = _Shift(fail_on_rgb=True)
    wrapper = SyntheticDefectGenerator(grey_only)
    with pytest.raises(RuntimeError, match="grey images only") as caught:
        wrapper(torch.rand(2, 3, 32, 32))
    assert grey_only.seen == [(2, 3, 32, 32)], "no second call on the luminance"
    assert any("`channels = 1`" in note for note in caught.value.__notes__)


@pytest.mark.parametrize(("bad", "message"), [
    (lambda x: (x[..., :16], torch.zeros(x.shape[0], 1, 32, 32)), r"_Bad returned images of shape"),
    (lambda x: (x * 3, torch.zeros(x.shape[0], 1, *x.shape[-2:])), r"_Bad returned pixels in \[.*\]"),
    (lambda x: (x, torch.full((x.shape[0], 1, *x.shape[-2:]), 0.5)), r"_Bad returned a mask with values"),
    (lambda x: (x, torch.zeros(x.shape[0], *x.shape[-2:])), r"_Bad returned a mask of shape"),
    (lambda x: x, r"_Bad must return \(augmented, mask\)"),
])
def test_generator_breaking_the_contract_is_named(world: Path, bad, message: str) -> None:
    class _Bad:
        def __call__(self, images: Tensor):
            return bad(images)

    data = DefectAugmented(grade_folder(world), _Bad(), synthetic_ratio=0.5)
    with pytest.raises(GeneratorContractError, match=message):
        data.augment_batch(_batch())


def test_perlin_and_cutpaste_fit_the_contract(world: Path) -> None:
    for generator in (PerlinAnomalyGenerator(probability=1.0), cut_paste(world)):
        out = DefectAugmented(grade_folder(world), generator, synthetic_ratio=1.0).augment_batch(_batch())
        assert out.gt_label.sum() >= 2 and out.image.min() >= 0 and out.image.max() <= 1


def test_real_defects_move_into_training_with_masks(world: Path) -> None:
    plain = grade_folder(world)
    plain.setup()
    test_defects = int(plain.test_data.samples.label_index.sum())
    data = DefectAugmented(grade_folder(world), None, real_defects_in_train=0.5, seed=0)
    data.setup()
    moved = data.train_data.samples[data.train_data.samples.label_index == 1]
    assert len(moved) == round(0.5 * test_defects) and (moved.split == "train").all()
    assert not set(moved.image_path) & set(data.test_data.samples.image_path)
    assert not set(moved.image_path) & set(data.val_data.samples.image_path)
    assert len(data.train_data) == len(plain.train_data) + len(moved)
    index = int(data.train_data.samples.index[data.train_data.samples.label_index == 1][0])
    item = data.train_data[index]
    assert item.gt_label and item.gt_mask is not None and item.gt_mask.any()


def test_synthetic_val_and_test_splits(world: Path) -> None:
    data = DefectAugmented(grade_folder(world, val_split_mode="none"), cut_paste(world), synthetic_val=True,
                           synthetic_test=True, seed=0)
    data.setup()
    real_defect_dir = (world / "pickled" / "test").resolve()
    for split in (data.val_data, data.test_data):
        samples = split.samples
        assert samples.label_index.sum() >= 1 and (samples.label_index == 0).sum() >= 1
        assert all(Path(p).is_file() for p in samples.mask_path[samples.label_index == 1])
        real_defects = [p for p in samples.image_path
                        if Path(p).resolve().is_relative_to(real_defect_dir) and Path(p).parent.name != "good"]
        assert not real_defects, "real defects are replaced by synthetic ones"
    item = data.test_data[int(data.test_data.samples.index[data.test_data.samples.label_index == 1][0])]
    assert item.gt_mask.any()


def test_bad_arguments_are_clear(world: Path) -> None:
    with pytest.raises(DefectGanError, match="synthetic_ratio must be in"):
        DefectAugmented(grade_folder(world), _Shift(), synthetic_ratio=1.5)
    with pytest.raises(DefectGanError, match="need a generator"):
        DefectAugmented(grade_folder(world), None, synthetic_test=True)
    with pytest.raises(DefectGanError, match="must be an anomalib AnomalibDataModule"):
        DefectAugmented("datasets/x", _Shift())  # type: ignore[arg-type]
    with pytest.raises(DefectGanError, match="not callable"):
        DefectAugmented(grade_folder(world), 3)  # type: ignore[arg-type]


def test_a_generator_that_stops_returning_a_pair_is_named_on_a_later_call() -> None:
    class _Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, images: Tensor):
            self.calls += 1
            return (images, torch.zeros(images.shape[0], 1, *images.shape[-2:])) if self.calls == 1 else images

    wrapper = SyntheticDefectGenerator(_Flaky())
    wrapper(torch.rand(2, 3, 8, 8))
    with pytest.raises(GeneratorContractError, match=r"_Flaky must return \(augmented, mask\)"):
        wrapper(torch.rand(2, 3, 8, 8))
