"""SyntheticDefectDataset: anomalib's synthetic val/test split, with any generator.

anomalib's ``SyntheticAnomalyDataset`` builds a ``PerlinAnomalyGenerator`` inline. This subclass
takes the generator as an argument (``CutPasteGenerator``, ``DefectTransferGenerator``, Perlin or
anything with the ``gen(images) -> (augmented, mask)`` contract) and is otherwise the same: half of
the normal source samples (``anomalous_ratio``) become abnormal images written, with their masks,
to a temporary folder that is removed when the dataset is garbage-collected.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from tempfile import mkdtemp

import pandas as pd
import torch
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import Split, read_image
from anomalib.data.utils.synthetic import ROOT, SyntheticAnomalyDataset
from torch import Tensor
from torchvision.transforms.v2 import Transform

from anomalib_defectgan.data.image_io import write_image

Generator = Callable[[Tensor], tuple[Tensor, Tensor]]


@contextlib.contextmanager
def always_apply(generator: Generator) -> Iterator[Generator]:
    """Temporarily set ``generator.probability`` to 1 (if it has one), so every call adds a defect."""
    old = getattr(generator, "probability", None)
    if old is not None:
        generator.probability = 1.0
    try:
        yield generator
    finally:
        if old is not None:
            generator.probability = old


def make_synthetic_defect_dataset(source_samples: pd.DataFrame, image_dir: Path, mask_dir: Path,
                                  generator: Generator, anomalous_ratio: float = 0.5,
                                  seed: int | None = None) -> pd.DataFrame:
    """Turn ``anomalous_ratio`` of normal samples into synthetic abnormal ones (see the module doc).

    Args:
        source_samples: anomalib samples table of normal images (``label_index`` 0 only).
        image_dir: Existing folder for the abnormal images.
        mask_dir: Existing folder for their masks.
        generator: Synthetic-defect generator (called on ``[3, H, W]`` float images in [0, 1]).
        anomalous_ratio: Fraction of samples to convert.
        seed: Seed of the choice of samples (None: random).

    Returns:
        The untouched normal samples plus the new abnormal rows (``split`` ``val``).

    Raises:
        ValueError: An abnormal source sample, or the generator returned an empty mask ten times.
    """
    if 1 in source_samples.label_index.to_numpy():
        raise ValueError("All source images must be normal.")
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder.")
    source_samples = source_samples.filter(["image_path", "label", "label_index", "mask_path", "split"])
    n_anomalous = int(anomalous_ratio * len(source_samples))
    anomalous = source_samples.sample(n_anomalous, random_state=seed)
    normal = source_samples.drop(anomalous.index)
    width = int(math.log10(max(n_anomalous, 1))) + 1
    rows = []
    with always_apply(generator), torch.no_grad():
        for number, image_path in enumerate(anomalous["image_path"]):
            image = read_image(image_path, as_tensor=True)
            for _ in range(10):
                augmented, mask = generator(image)
                if mask.any():
                    break
            else:
                raise ValueError(f"{image_path}: the generator returned an empty mask ten times")
            name = f"{str(number).zfill(width)}.png"
            write_image(image_dir / name, augmented.clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            write_image(mask_dir / name, mask[0].cpu().numpy() > 0.5)
            rows.append({"image_path": str(image_dir / name), "label": "abnormal", "label_index": 1,
                         "mask_path": str(mask_dir / name), "split": Split.VAL})
    return pd.concat([normal, pd.DataFrame(rows)], ignore_index=True)


class SyntheticDefectDataset(SyntheticAnomalyDataset):
    """anomalib synthetic split whose abnormal images come from ``generator``.

    Args:
        generator: Any object with the anomaly-generator contract.
        source_samples: Normal samples (anomalib samples table) to start from.
        dataset_name: Name of the temporary sub-folder.
        augmentations: anomalib dataset augmentations.
        anomalous_ratio: Fraction of samples turned abnormal.
        seed: Seed of the choice of samples.

    Example:
        >>> gen = CutPasteGenerator("bank/", seed=0)
        >>> val = SyntheticDefectDataset.from_dataset(datamodule.train_data, gen)
    """

    def __init__(self, generator: Generator, source_samples: pd.DataFrame, dataset_name: str = "synthetic",
                 augmentations: Transform | None = None, anomalous_ratio: float = 0.5,
                 seed: int | None = None) -> None:
        AnomalibDataset.__init__(self, augmentations=augmentations)
        self.source_samples = source_samples
        root = ROOT / dataset_name
        root.mkdir(parents=True, exist_ok=True)
        self.root = Path(mkdtemp(dir=root))
        self.im_dir = self.root / "abnormal"
        self.mask_dir = self.root / "ground_truth"
        self.im_dir.mkdir()
        self.mask_dir.mkdir()
        self._cleanup = True
        self.samples = make_synthetic_defect_dataset(source_samples, self.im_dir, self.mask_dir, generator,
                                                     anomalous_ratio, seed)
        self.samples.attrs["task"] = "segmentation"

    @classmethod
    def from_dataset(cls, dataset: AnomalibDataset, generator: Generator | None = None,  # type: ignore[override]
                     anomalous_ratio: float = 0.5, seed: int | None = None) -> SyntheticDefectDataset:
        """Build the synthetic split from a dataset of normal images.

        Args:
            dataset: Dataset of normal images.
            generator: The generator (required; ``None`` only to keep the parent's signature).
            anomalous_ratio: Fraction of samples turned abnormal.
            seed: Seed of the choice of samples.
        """
        if generator is None:
            raise ValueError("SyntheticDefectDataset.from_dataset needs a generator")
        return cls(generator, dataset.samples, dataset_name=dataset.name, augmentations=dataset.augmentations,
                   anomalous_ratio=anomalous_ratio, seed=seed)


__all__ = ["SyntheticDefectDataset", "always_apply", "make_synthetic_defect_dataset"]
