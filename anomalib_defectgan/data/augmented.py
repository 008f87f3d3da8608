"""DefectAugmented: put defects (synthetic and real) into the training split of any anomalib datamodule.

anomalib's datamodules train on good images only. This wrapper keeps the wrapped datamodule's
datasets and splits, and:

* turns ``synthetic_ratio`` of every training batch into synthetic defects with a generator of
  anomalib's Perlin contract (``gen(images [B,C,H,W] in [0,1]) -> (augmented, mask [B,1,H,W]
  in {0,1})``). This runs in ``on_after_batch_transfer``, i.e. on the device (GPU when there is
  one) and BEFORE the model's pre-processor normalises the batch, so the generator sees the raw
  [0, 1] images it expects. Labels and masks of the batch are set from the generator's masks
  (an image the generator left unchanged, empty mask, stays good);
* moves ``real_defects_in_train`` of the wrapped test split's real defects (with their masks)
  into training, for supervised models such as
  :class:`~anomalib_defectgan.models.defect_classifier.DefectClassifier`;
* on request, replaces the validation and/or test split by synthetic defects painted with the
  same generator on half of that split's good images (written once to a temporary folder by
  :class:`~anomalib_defectgan.data.synthetic_split.SyntheticDefectDataset`).

Generators made for one channel: anomalib batches always have 3 channels. A generator with an int
attribute ``channels`` equal to 1 gets their luminance
(:func:`~anomalib_defectgan.data.image_contract.to_channels`) and its output is repeated to 3
channels; every other generator gets the 3-channel batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from anomalib.data import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from torch import Tensor, nn

from anomalib_defectgan.data.image_contract import (
    check_generator_output,
    check_pixel_range,
    to_channels,
)
from anomalib_defectgan.errors import DefectGanError


class SyntheticDefectGenerator:
    """Calls a generator on 3-channel [0, 1] batches, handling 1-channel generators; checks its output once.

    Args:
        generator: Any callable of the Perlin contract. It gets the luminance when it has an int
            attribute ``channels`` equal to 1, the 3-channel batch otherwise.
    """

    def __init__(self, generator: Callable[[Tensor], tuple[Tensor, Tensor]]) -> None:
        if not callable(generator):
            raise DefectGanError(f"generator {type(generator).__name__} is not callable")
        self.generator = generator
        self.name = type(generator).__name__
        self.channels = 1 if getattr(generator, "channels", None) == 1 else 3
        self.checked = False

    @property
    def probability(self) -> float | None:
        """The wrapped generator's ``probability`` (None if it has none)."""
        return getattr(self.generator, "probability", None)

    @probability.setter
    def probability(self, value: float) -> None:
        if hasattr(self.generator, "probability"):
            self.generator.probability = value

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``images [B, 3, H, W]`` in [0, 1] -> ``(augmented [B, 3, H, W], mask [B, 1, H, W] in {0, 1})``.

        A single ``[3, H, W]`` image gives ``([3, H, W], [1, H, W])``.
        """
        if images.dim() == 3:
            augmented, mask = self(images[None])
            return augmented[0], mask[0]
        check_pixel_range(images, f"images given to generator {self.name}")
        source = to_channels(images, 1) if self.channels == 1 else images
        try:
            output = self.generator(source)
        except Exception as err:
            if self.channels == 3:
                err.add_note(f"generator {self.name} was given a 3-channel batch {tuple(source.shape)}; a generator "
                             "that takes 1-channel images declares it with an int attribute `channels = 1`")
            raise
        if self.checked and isinstance(output, (tuple, list)) and len(output) == 2:
            augmented, mask = output
        else:  # the full check once; a broken pair is named on every call
            augmented, mask = check_generator_output(self.name, source, output)
            self.checked = True
        if source.shape[1] != images.shape[1]:
            augmented = augmented.expand(-1, images.shape[1], -1, -1)
        mask = (mask.reshape(images.shape[0], 1, *images.shape[-2:]) > 0.5).to(images.dtype)
        return augmented.clamp(0, 1).to(images.dtype), mask


def _abnormal(samples: pd.DataFrame) -> pd.Series:
    return samples["label_index"].astype(int) == 1


def _with_samples(dataset: AnomalibDataset, samples: pd.DataFrame, task: str) -> AnomalibDataset:
    """A copy of ``dataset`` (same class and augmentations) holding ``samples``."""
    subset = copy.copy(dataset)
    samples = samples.reset_index(drop=True)
    samples.attrs["task"] = task
    subset.samples = samples
    subset.samples.attrs["task"] = task
    return subset


def _synthetic(dataset: AnomalibDataset, generator: SyntheticDefectGenerator, seed: int | None) -> AnomalibDataset:
    """Half of ``dataset``'s good images with synthetic defects, the other half as they are."""
    from anomalib_defectgan.data.synthetic_split import SyntheticDefectDataset

    samples = dataset.samples
    goods = _with_samples(dataset, samples[~_abnormal(samples)], dataset.task.value)
    if len(goods.samples) < 2:
        raise DefectGanError(f"a synthetic split needs at least 2 good images, the wrapped split has "
                             f"{len(goods.samples)}")
    return SyntheticDefectDataset.from_dataset(goods, generator, anomalous_ratio=0.5, seed=seed)


class DefectAugmented(AnomalibDataModule):
    """Wrap an anomalib datamodule so its training batches contain (synthetic and real) defects.

    Args:
        datamodule: Any :class:`~anomalib.data.AnomalibDataModule` (``Folder``, ``MVTecAD``, ...);
            its batch sizes, workers and augmentations are used.
        generator: A synthetic-defect generator of anomalib's Perlin contract, e.g.
            ``anomalib.data.utils.generators.PerlinAnomalyGenerator(probability=1.0)``,
            :class:`anomalib_defectgan.CutPasteGenerator` or
            :class:`anomalib_defectgan.DefectTransferGenerator`. Its own ``probability`` still
            applies to the images picked for it, so use ``probability: 1.0``. None: no synthesis.
        synthetic_ratio: Fraction of each training batch turned into synthetic defects (picked
            among its good images).
        real_defects_in_train: Fraction of the wrapped test split's real defects moved into
            training (also removed from validation if it holds the same files).
        synthetic_val: Validation = the wrapped validation split's good images, half of them
            with synthetic defects (no real defects). Without good validation images, 20% (at
            least 2) of the good training images are split off for it.
        synthetic_test: Test = the wrapped test split's good images, half with synthetic defects.
        seed: Seed of every random choice made here (not of the generator).
    """

    def __init__(
        self,
        datamodule: AnomalibDataModule,
        generator: nn.Module | Callable | None = None,
        synthetic_ratio: float = 0.5,
        real_defects_in_train: float = 0.0,
        synthetic_val: bool = False,
        synthetic_test: bool = False,
        seed: int | None = 0,
    ) -> None:
        if not isinstance(datamodule, AnomalibDataModule):
            raise DefectGanError(f"datamodule must be an anomalib AnomalibDataModule, got {type(datamodule).__name__}")
        for name, value in (("synthetic_ratio", synthetic_ratio), ("real_defects_in_train", real_defects_in_train)):
            if not 0.0 <= value <= 1.0:
                raise DefectGanError(f"{name} must be in [0, 1], got {value}")
        if generator is None and (synthetic_ratio > 0 or synthetic_val or synthetic_test):
            if synthetic_val or synthetic_test:
                raise DefectGanError("synthetic_val/synthetic_test need a generator")
            synthetic_ratio = 0.0
        super().__init__(
            train_batch_size=datamodule.train_batch_size,
            eval_batch_size=datamodule.eval_batch_size,
            num_workers=datamodule.num_workers,
            train_augmentations=datamodule.train_augmentations,
            val_augmentations=datamodule.val_augmentations,
            test_augmentations=datamodule.test_augmentations,
            seed=seed,
        )
        self.datamodule = datamodule
        self.generator = SyntheticDefectGenerator(generator) if generator is not None else None
        self.synthetic_ratio = synthetic_ratio
        self.real_defects_in_train = real_defects_in_train
        self.synthetic_val = synthetic_val
        self.synthetic_test = synthetic_test
        self._rng = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))

    @property
    def name(self) -> str:
        """The wrapped datamodule's name (used in anomalib's results paths)."""
        return self.datamodule.name

    @property
    def category(self) -> str:
        """The wrapped datamodule's category."""
        return self.datamodule.category

    @category.setter
    def category(self, category: str) -> None:
        self.datamodule.category = category

    def _setup(self, _stage: str | None = None) -> None:
        self.datamodule.setup(_stage)
        for subset in ("train_data", "val_data", "test_data"):
            if hasattr(self.datamodule, subset):
                setattr(self, subset, getattr(self.datamodule, subset))
        if self.real_defects_in_train > 0:
            self._move_real_defects()

    def _move_real_defects(self) -> None:
        test = getattr(self, "test_data", None)
        if test is None or not test.has_anomalous:
            raise DefectGanError(f"real_defects_in_train={self.real_defects_in_train} but the wrapped "
                                 f"{self.datamodule.name} datamodule has no real defects in its test split")
        samples = test.samples
        defects = samples[_abnormal(samples)]
        count = round(self.real_defects_in_train * len(defects))
        if count == 0:
            return
        rng = np.random.default_rng(self.seed)
        moved = defects.iloc[np.sort(rng.choice(len(defects), size=count, replace=False))]
        moved_paths = set(moved["image_path"])
        task = "segmentation" if (moved["mask_path"].astype(str) != "").any() else self.train_data.task.value
        train_rows = pd.concat([self.train_data.samples, moved.assign(split="train")], ignore_index=True)
        self.train_data = _with_samples(self.train_data, train_rows, task)
        self.test_data = _with_samples(test, samples[~samples["image_path"].isin(moved_paths)], test.task.value)
        val = getattr(self, "val_data", None)
        if val is not None and val.samples["image_path"].isin(moved_paths).any():
            self.val_data = _with_samples(val, val.samples[~val.samples["image_path"].isin(moved_paths)],
                                          val.task.value)

    def _create_test_split(self) -> None:
        if self.synthetic_test:
            self.test_data = _synthetic(self.test_data, self.generator, self.seed)

    def _create_val_split(self) -> None:
        if not self.synthetic_val:
            return
        val = getattr(self, "val_data", None)
        if val is None or not val.has_normal:
            goods = self.train_data.samples[~_abnormal(self.train_data.samples)]
            rng = np.random.default_rng(self.seed)
            if len(goods) < 4:
                raise DefectGanError(f"synthetic_val needs good validation images or at least 4 good training "
                                     f"images to split off, the wrapped datamodule has {len(goods)}")
            picked = goods.iloc[rng.choice(len(goods), size=max(2, len(goods) // 5), replace=False)]
            rest = self.train_data.samples[~self.train_data.samples["image_path"].isin(set(picked["image_path"]))]
            self.train_data = _with_samples(self.train_data, rest, self.train_data.task.value)
            val = _with_samples(self.train_data, picked.assign(split="val"), self.train_data.task.value)
        self.val_data = _synthetic(val, self.generator, self.seed)

    def val_dataloader(self) -> Any:
        """The validation loader, or no loader (validation skipped) when there is no validation split."""
        return super().val_dataloader() if hasattr(self, "val_data") else []

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Paint synthetic defects on ``synthetic_ratio`` of each training batch (on its device)."""
        trainer = self.trainer
        if self.generator is None or self.synthetic_ratio <= 0 or trainer is None or not trainer.training:
            return batch
        return self.augment_batch(batch)

    def augment_batch(self, batch: Any) -> Any:
        """Turn ``synthetic_ratio`` of the good images of an anomalib ``ImageBatch`` into synthetic defects."""
        images = batch.image
        size = images.shape[0]
        labels = (batch.gt_label if batch.gt_label is not None
                  else torch.zeros(size, dtype=torch.bool, device=images.device)).bool().reshape(-1)
        goods = torch.nonzero(~labels.cpu()).flatten()
        count = min(round(self.synthetic_ratio * size), len(goods))
        if count == 0:
            return batch
        picked = goods[torch.randperm(len(goods), generator=self._rng)[:count]].to(images.device)
        if isinstance(self.generator.generator, nn.Module):
            self.generator.generator.to(images.device)
        augmented, mask = self.generator(images[picked].float())
        new_images = images.clone()
        new_images[picked] = augmented.to(images.dtype)
        masks = (batch.gt_mask.clone().bool() if batch.gt_mask is not None
                 else torch.zeros(size, *images.shape[-2:], dtype=torch.bool, device=images.device))
        masks = masks.reshape(size, *images.shape[-2:])
        masks[picked] = mask[:, 0] > 0.5
        new_labels = labels.clone()
        new_labels[picked] = mask.flatten(1).amax(1) > 0.5
        return batch.update(image=new_images, gt_label=new_labels, gt_mask=masks)
