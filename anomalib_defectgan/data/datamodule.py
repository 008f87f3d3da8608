"""DefectDataModule: manifest -> GAN training batches of donors, canvases and goods.

Each item of the training set is a whole :class:`~anomalib_defectgan.data.batch.GanBatch`, drawn
from a random generator seeded by ``(seed, index)``. Batches are therefore the same whatever the
number of workers or GPUs, and an epoch index shifts them so epochs differ. Sampling is balanced:
a donor's defect class is drawn uniformly, then an image of that class; a canvas's grade is drawn
uniformly, then a good image of that grade.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from anomalib_defectgan.data.batch import MASK_KIND_IDS, DefectBatch, GanBatch
from anomalib_defectgan.data.crops import (
    FLIP_MODES,
    augment,
    crop_window,
    donor_centre,
    fit_to_crop,
    random_centre,
)
from anomalib_defectgan.data.image_io import read_image, read_mask
from anomalib_defectgan.data.manifest import GOOD_CLASS, SPLITS, read_manifest, vocabularies
from anomalib_defectgan.errors import DefectGanError, ManifestError


@dataclass(frozen=True)
class CropSpec:
    """How crops are cut and augmented (plain data, copied into every worker)."""

    crop_size: int
    channels: int
    flips: str
    rolling_axis: str
    rotate90: bool
    jitter: int


class ImageStore:
    """Reads rows' images and masks, keeping them in memory after the first read."""

    def __init__(self, frame: pd.DataFrame, channels: int, cache: bool = True) -> None:
        self.paths = frame["image_path"].tolist()
        self.mask_paths = frame["mask_path"].tolist()
        self.channels = channels
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __call__(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``uint8 [H, W, C]`` and mask ``bool [H, W]`` (all False without a mask file)."""
        if self.cache is not None and row in self.cache:
            return self.cache[row]
        image = read_image(self.paths[row], self.channels)
        mask_path = self.mask_paths[row]
        mask = read_mask(mask_path, image.shape[:2]) if mask_path else np.zeros(image.shape[:2], bool)
        if self.cache is not None:
            self.cache[row] = (image, mask)
        return image, mask


class GanBatchDataset(Dataset):
    """Map-style dataset whose item ``i`` is a whole deterministic :class:`GanBatch`."""

    def __init__(self, frame: pd.DataFrame, classes: Sequence[str], grades: Sequence[str], spec: CropSpec,
                 batch_size: int, goods_per_batch: int, length: int, seed: int, cache: bool = True) -> None:
        self.frame = frame.reset_index(drop=True)
        self.store = ImageStore(self.frame, spec.channels, cache)
        self.spec = spec
        self.batch_size = batch_size
        self.goods_per_batch = goods_per_batch
        self.length = length
        self.seed = seed
        self.class_ids = self.frame["defect_class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        self.grade_ids = self.frame["grade"].map({g: i for i, g in enumerate(grades)}).to_numpy()
        kinds = self.frame["mask_kind"] if "mask_kind" in self.frame else np.where(self.frame["mask_path"] != "", "pixel", "none")
        self.mask_kinds = np.array([MASK_KIND_IDS.get(k or "none", 0) for k in kinds])
        is_good = (self.frame["label"] == "good").to_numpy()
        self.donors_by_class = [np.flatnonzero(~is_good & (self.class_ids == c)) for c in np.unique(self.class_ids[~is_good])]
        self.goods_by_grade = [np.flatnonzero(is_good & (self.grade_ids == g)) for g in np.unique(self.grade_ids[is_good])]

    def __len__(self) -> int:
        return self.length

    def _draw(self, groups: list[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
        picks = rng.integers(len(groups), size=count)
        return np.array([groups[g][rng.integers(len(groups[g]))] for g in picks], dtype=int)

    def _item(self, row: int, rng: np.random.Generator, centred: bool) -> DefectBatch:
        spec = self.spec
        image, mask = fit_to_crop(*self.store(row), spec.crop_size)
        centre = donor_centre(mask, rng, spec.jitter) if centred else random_centre(mask.shape, rng)
        top, left = crop_window(mask.shape, spec.crop_size, centre)
        image = image[top:top + spec.crop_size, left:left + spec.crop_size]
        mask = mask[top:top + spec.crop_size, left:left + spec.crop_size]
        image, mask = augment(image, mask, rng, spec.flips, spec.rolling_axis, spec.rotate90)
        return DefectBatch(
            image=torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255.0),
            mask=torch.from_numpy(mask.copy()).float().unsqueeze(0),
            defect_class=torch.tensor(self.class_ids[row]),
            grade=torch.tensor(self.grade_ids[row]),
            mask_kind=torch.tensor(self.mask_kinds[row]),
            image_path=[self.store.paths[row]],
        )

    def __getitem__(self, index: int) -> GanBatch:
        rng = np.random.default_rng([self.seed, int(index)])
        donors = self._draw(self.donors_by_class, self.batch_size, rng)
        canvases = self._draw(self.goods_by_grade, self.batch_size, rng)
        goods = self._draw(self.goods_by_grade, self.goods_per_batch, rng)
        return GanBatch(
            donor=DefectBatch.collate([self._item(r, rng, centred=True) for r in donors]),
            canvas=DefectBatch.collate([self._item(r, rng, centred=False) for r in canvases]),
            good=DefectBatch.collate([self._item(r, rng, centred=False) for r in goods]),
        )


class EpochSampler(Sampler[int]):
    """Yields ``epoch * length + i``: the same batches for the same epoch, new ones each epoch."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.length, (self.epoch + 1) * self.length))

    def __len__(self) -> int:
        return self.length


def _unbatched(item: GanBatch) -> GanBatch:
    return item


class DefectDataModule(pl.LightningDataModule):
    """Batches for the defect-transfer GAN, read from a manifest.

    Args:
        manifest: Path of ``manifest.csv`` (or its folder).
        crop_size: Side of the square crops the GAN trains on.
        channels: 1 (grey) or 3 (RGB).
        batch_size: Donor/canvas pairs per batch.
        goods_per_batch: Good crops per batch for the identity loss.
        num_workers: DataLoader worker processes (0 = main process).
        classes: Class vocabulary to use (``['good', ...]``), e.g. from a checkpoint; the data's
            classes must all be in it. Taken from the data when None.
        grades: Grade vocabulary to use; same rules as ``classes``.
        include_grades: Keep only rows of these grades.
        exclude_grades: Drop rows of these grades.
        exclude_defect_grades: Drop the defect rows of these grades but keep their good images as
            canvases (a new grade: its good images exist, its defects are for testing only).
        train_splits: Manifest splits used for training.
        val_splits: Manifest splits used for the fixed validation batches (sample grids); the
            training rows are used when these splits have no donors or no goods.
        flips: ``none``, ``rolling`` (mirror along the rolling direction only) or ``both``.
        rolling_axis: ``horizontal`` or ``vertical``.
        rotate90: Allow 90-degree turns (off: rolled steel is directional).
        jitter: Donor crops are centred on a random defect pixel moved by up to this many px.
        steps_per_epoch: Training batches per epoch; default: enough to see every donor once.
        val_samples: Donor/canvas pairs in the validation batch.
        cache_images: Keep decoded images in memory (per worker).
        multiprocessing_context: Start method of worker processes (``fork``, ``spawn``,
            ``forkserver``; None = the platform's default). Use ``spawn`` when OpenVINO or another
            threaded runtime is already loaded in the process: forking it is unsafe.
        seed: Seed of all sampling.
    """

    def __init__(
        self,
        manifest: str,
        crop_size: int = 64,
        channels: int = 1,
        batch_size: int = 8,
        goods_per_batch: int = 4,
        num_workers: int = 0,
        classes: list[str] | None = None,
        grades: list[str] | None = None,
        include_grades: list[str] | None = None,
        exclude_grades: list[str] | None = None,
        exclude_defect_grades: list[str] | None = None,
        train_splits: list[str] | None = None,
        val_splits: list[str] | None = None,
        flips: str = "rolling",
        rolling_axis: str = "horizontal",
        rotate90: bool = False,
        jitter: int = 8,
        steps_per_epoch: int | None = None,
        val_samples: int = 8,
        cache_images: bool = True,
        multiprocessing_context: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise DefectGanError(f"channels must be 1 or 3, got {channels}")
        if flips not in FLIP_MODES:
            raise DefectGanError(f"flips must be one of {FLIP_MODES}, got {flips!r}")
        if rolling_axis not in ("horizontal", "vertical"):
            raise DefectGanError(f"rolling_axis must be 'horizontal' or 'vertical', got {rolling_axis!r}")
        if crop_size % 8 or crop_size < 16:
            raise DefectGanError(f"crop_size must be a multiple of 8 and >= 16, got {crop_size}")
        self.manifest = manifest
        self.spec = CropSpec(crop_size, channels, flips, rolling_axis, rotate90, jitter)
        self.batch_size = batch_size
        self.goods_per_batch = goods_per_batch
        self.num_workers = num_workers
        self._classes = list(classes) if classes else None
        self._grades = list(grades) if grades else None
        self.include_grades = include_grades
        self.exclude_grades = exclude_grades
        self.exclude_defect_grades = exclude_defect_grades
        self.train_splits = list(train_splits or ["train"])
        self.val_splits = list(val_splits or ["val"])
        for split in self.train_splits + self.val_splits:
            if split not in SPLITS:
                raise DefectGanError(f"unknown split {split!r}; known: {list(SPLITS)}")
        self.steps_per_epoch = steps_per_epoch
        self.val_samples = val_samples
        self.cache_images = cache_images
        self.multiprocessing_context = multiprocessing_context if num_workers > 0 else None
        self.seed = seed
        self.frame: pd.DataFrame | None = None
        self.train_set: GanBatchDataset | None = None
        self.val_set: GanBatchDataset | None = None

    @property
    def crop_size(self) -> int:
        """Side of the training crops."""
        return self.spec.crop_size

    @property
    def channels(self) -> int:
        """Image channels (1 or 3)."""
        return self.spec.channels

    @property
    def classes(self) -> list[str]:
        """Class vocabulary, ``'good'`` first (available after :meth:`setup`)."""
        self._require_setup()
        return list(self._classes)

    @property
    def grades(self) -> list[str]:
        """Grade vocabulary (available after :meth:`setup`)."""
        self._require_setup()
        return list(self._grades)

    def _require_setup(self) -> None:
        if self.frame is None:
            self.setup()

    def _load(self) -> pd.DataFrame:
        frame = read_manifest(self.manifest)
        if self.include_grades:
            unknown = sorted(set(self.include_grades) - set(frame["grade"]))
            if unknown:
                raise ManifestError(f"{self.manifest}: include_grades {unknown} not in the data; grades: "
                                    f"{sorted(set(frame['grade']))}")
            frame = frame[frame["grade"].isin(self.include_grades)]
        if self.exclude_grades:
            frame = frame[~frame["grade"].isin(self.exclude_grades)]
        if self.exclude_defect_grades:
            frame = frame[~(frame["grade"].isin(self.exclude_defect_grades) & (frame["label"] == "defect"))]
        return frame.reset_index(drop=True)

    def _check_vocab(self, name: str, given: list[str] | None, found: list[str]) -> list[str]:
        if given is None:
            return found
        unknown = sorted(set(found) - set(given))
        if unknown:
            raise DefectGanError(
                f"{self.manifest}: the data has {name} {unknown} that the configured vocabulary {given} lacks "
                "(a checkpoint trained on other data? train a new model, or pass a manifest with matching "
                f"{name})")
        return list(given)

    def setup(self, stage: str | None = None) -> None:
        """Read the manifest, build vocabularies and the train/val batch datasets."""
        if self.frame is not None:
            return
        frame = self._load()
        classes, grades = vocabularies(frame)
        self._classes = self._check_vocab("classes", self._classes, classes)
        self._grades = self._check_vocab("grades", self._grades, grades)
        if self._classes[0] != GOOD_CLASS:
            raise DefectGanError(f"class vocabulary must start with 'good', got {self._classes}")
        train = frame[frame["split"].isin(self.train_splits)]
        self._check_roles(train, f"splits {self.train_splits}")
        val = frame[frame["split"].isin(self.val_splits)]
        if (val["label"] == "defect").sum() == 0 or (val["label"] == "good").sum() == 0:
            val = train
        donors = int((train["label"] == "defect").sum())
        length = self.steps_per_epoch or max(1, -(-donors // self.batch_size))
        args = {"classes": self._classes, "grades": self._grades, "spec": self.spec, "cache": self.cache_images}
        self.train_set = GanBatchDataset(train, batch_size=self.batch_size, goods_per_batch=self.goods_per_batch,
                                         length=length, seed=self.seed, **args)
        self.val_set = GanBatchDataset(val, batch_size=self.val_samples, goods_per_batch=self.goods_per_batch,
                                       length=1, seed=self.seed + 1, **args)
        self.frame = frame

    def _check_roles(self, frame: pd.DataFrame, where: str) -> None:
        if (frame["label"] == "defect").sum() == 0:
            raise ManifestError(f"{self.manifest}: no defect images in {where}: the GAN needs donor defects")
        if (frame["label"] == "good").sum() == 0:
            raise ManifestError(f"{self.manifest}: no good images in {where}: the GAN needs good canvases "
                                "(for datasets without good images, import them with background tiles)")

    def _loader(self, dataset: GanBatchDataset, train: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=None, sampler=EpochSampler(len(dataset)) if train else None,
                          num_workers=self.num_workers, collate_fn=_unbatched,
                          multiprocessing_context=self.multiprocessing_context,
                          persistent_workers=self.num_workers > 0 and train)

    def train_dataloader(self) -> DataLoader:
        """Training batches (:class:`GanBatch`), ``steps_per_epoch`` of them per epoch."""
        self._require_setup()
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        """One fixed :class:`GanBatch` of ``val_samples`` pairs (the same every epoch)."""
        self._require_setup()
        return self._loader(self.val_set, train=False)
