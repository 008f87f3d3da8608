"""The defect bank: real donor defects (pixels + mask + class) that generators paste or encode.

A bank is loaded once from one of these sources (first match wins):

1. **A manifest** (``.csv``/``.parquet`` file, or a folder holding ``manifest.csv``): every row
   with ``label == defect`` and a ``mask_path`` (``mask_kind`` ``pixel`` or ``box``; rows with
   ``mask_kind == none`` have no usable mask and are skipped). Class = ``defect_class``.
2. **A folder of defect images** ``<folder>/*.png`` whose masks are found at, in this order,
   ``<folder>/masks/<stem>_mask.png``, ``<folder>/../masks/<stem>_mask.png`` (anomalib ``Folder``
   layout: ``abnormal_dir`` beside ``mask_dir``, as written by ``defectgan generate``) or
   ``<folder>/../../ground_truth/<folder name>/<stem>_mask.png`` (MVTec layout). Class = the
   folder's name.
3. **A folder of class folders** ``<folder>/<class>/*.png``, each laid out as in 2 (folders named
   ``masks``, ``ground_truth`` and ``good`` are not classes). Class = the sub-folder's name.

Any image suffix of :data:`~anomalib_defectgan.data.image_io.IMAGE_SUFFIXES` works for images
and masks. Images without a mask, or with an empty mask, are skipped and counted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from anomalib_defectgan.data.image_contract import to_channels
from anomalib_defectgan.data.image_io import IMAGE_SUFFIXES, list_images, read_image, read_mask
from anomalib_defectgan.errors import DefectGanError, summarize

NOT_CLASSES = {"masks", "mask", "ground_truth", "good"}


class DefectBankError(DefectGanError):
    """A defect bank cannot be read or holds no usable defect for the requested classes."""


@dataclass
class Donor:
    """One real defect.

    Attributes:
        image: ``[3, h, w]`` float in [0, 1]: the defect's bounding box plus a margin.
        mask: ``[1, h, w]`` float in {0, 1}, the defect pixels of ``image``.
        defect_class: Class name.
        path: Source image file.
        mask_path: Source mask file.
        box: ``(top, left, height, width)`` of ``image`` inside the source image.
        source_size: ``(H, W)`` of the source image.
    """

    image: Tensor
    mask: Tensor
    defect_class: str
    path: str
    mask_path: str
    box: tuple[int, int, int, int]
    source_size: tuple[int, int]

    def _span(self) -> tuple[int, int, int, int]:
        """First and last row and column of the defect's pixels, in crop coordinates."""
        rows = torch.nonzero(self.mask[0].any(dim=1)).flatten()
        cols = torch.nonzero(self.mask[0].any(dim=0)).flatten()
        return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])

    @property
    def center(self) -> tuple[int, int]:
        """``(y, x)`` of the defect's bounding-box centre in the source image."""
        first_row, last_row, first_col, last_col = self._span()
        return self.box[0] + (first_row + last_row) // 2, self.box[1] + (first_col + last_col) // 2

    @property
    def extent(self) -> tuple[int, int]:
        """``(height, width)`` of the defect's bounding box (the mask's, without the margin)."""
        first_row, last_row, first_col, last_col = self._span()
        return last_row - first_row + 1, last_col - first_col + 1

    def window_center(self, size: int) -> tuple[int, int]:
        """``(y, x)`` in the source image of a ``size`` window that holds defect pixels.

        The bounding-box centre, unless a ``size`` window there misses the defect (a long thin
        defect, a ring, several far-apart blobs larger than the window): then the defect pixel
        nearest to that centre.
        """
        cy, cx = self.center
        top, left = self.box[0], self.box[1]
        ys, xs = torch.nonzero(self.mask[0] > 0.5, as_tuple=True)
        ys, xs = ys + top, xs + left
        half = size // 2
        inside = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
        if bool(inside.any()):
            return cy, cx
        nearest = int(torch.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        return int(ys[nearest]), int(xs[nearest])


def _find_mask(image: Path) -> Path | None:
    folders = [image.parent / "masks", image.parent.parent / "masks",
               image.parent.parent.parent / "ground_truth" / image.parent.name]
    for folder in folders:
        for name in [f"{image.stem}_mask{s}" for s in IMAGE_SUFFIXES] + [f"{image.stem}{s}" for s in IMAGE_SUFFIXES]:
            candidate = folder / name
            if candidate.is_file() and candidate != image:
                return candidate
    return None


def _discover(source: Path, grades: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """``(image, mask or '', class)`` for every candidate donor of a source (see module doc)."""
    if source.is_file() or (source / "manifest.csv").is_file():
        from anomalib_defectgan.data.manifest import read_manifest

        frame = read_manifest(source)
        frame = frame[frame["label"] == "defect"]
        if grades is not None:
            frame = frame[frame["grade"].isin(list(grades))]
        if "mask_kind" in frame.columns:
            frame = frame.assign(mask_path=frame["mask_path"].where(frame["mask_kind"] != "none", ""))
        return list(zip(frame["image_path"], frame["mask_path"], frame["defect_class"], strict=True))
    if not source.is_dir():
        raise DefectBankError(f"{source}: defect bank not found (expected a manifest or a folder of defect images)")
    if grades is not None:
        raise DefectBankError(f"{source}: a grade filter needs a manifest (a folder of images has no grades)")
    folders = [source] if list_images(source) else sorted(
        p for p in source.iterdir() if p.is_dir() and p.name not in NOT_CLASSES and list_images(p))
    items = []
    for folder in folders:
        for image in list_images(folder):
            mask = _find_mask(image)
            items.append((str(image), str(mask) if mask else "", folder.name))
    return items


class DefectBank:
    """Donor defects loaded once from a manifest or a folder (see the module doc for layouts).

    Args:
        source: Manifest file, dataset folder with ``manifest.csv``, or a folder of defect images.
        classes: Keep only these defect classes (None: all).
        grades: Keep only donors of these grades (manifest sources only; None: all). Leave the
            target grade out to keep its real defects out of the synthetic data.
        margin: Pixels of context kept around each defect's bounding box (used for blending and
            brightness matching).

    Raises:
        DefectBankError: The source is missing, unreadable, or has no usable defect of ``classes``.
    """

    def __init__(self, source: str | Path, classes: Sequence[str] | None = None, margin: int = 8,
                 grades: Sequence[str] | None = None) -> None:
        self.source = Path(source).resolve()
        self.margin = margin
        try:
            items = _discover(self.source, grades)
        except DefectBankError:
            raise
        except DefectGanError as err:
            raise DefectBankError(f"defect bank {self.source}: {err}") from err
        available = Counter(c for _, m, c in items if m)
        self.skipped: list[str] = [img for img, m, _ in items if not m]
        if classes is not None:
            classes = list(classes)
            items = [item for item in items if item[2] in classes]
        self.donors: list[Donor] = []
        digest = hashlib.sha256()
        for image_path, mask_path, defect_class in items:
            if not mask_path:
                continue
            donor = self._load(image_path, mask_path, defect_class, digest)
            if donor is None:
                self.skipped.append(image_path)
            else:
                self.donors.append(donor)
        if not self.donors:
            wanted = f"classes {classes}" if classes is not None else "any class"
            if grades is not None:
                wanted += f" in grades {list(grades)}"
            have = dict(available) if available else "no defect images with masks"
            raise DefectBankError(f"defect bank {self.source}: no usable defects for {wanted}; the bank has {have}"
                                  + (f"; skipped (no mask / empty mask) {summarize(self.skipped)}"
                                     if self.skipped else ""))
        self.digest = digest.hexdigest()
        self._cache: dict[tuple[int, str], list[tuple[Tensor, Tensor]]] = {}

    def _load(self, image_path: str, mask_path: str, defect_class: str, digest: hashlib._Hash) -> Donor | None:
        try:
            image = read_image(image_path, channels=3)
            mask = read_mask(mask_path, shape=image.shape[:2])
        except DefectGanError as err:
            raise DefectBankError(f"defect bank {self.source}: {err}") from err
        if not mask.any():
            return None
        for path in (image_path, mask_path):
            digest.update(Path(path).read_bytes())
        digest.update(defect_class.encode())
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        height, width = mask.shape
        top, bottom = max(rows[0] - self.margin, 0), min(rows[-1] + 1 + self.margin, height)
        left, right = max(cols[0] - self.margin, 0), min(cols[-1] + 1 + self.margin, width)
        # numpy, not torch, for these small per-file conversions: no thread-pool overhead per call
        crop = np.ascontiguousarray(image[top:bottom, left:right].transpose(2, 0, 1), dtype=np.float32) / 255.0
        crop_mask = mask[None, top:bottom, left:right].astype(np.float32)
        crop, crop_mask = torch.from_numpy(crop), torch.from_numpy(crop_mask)
        return Donor(crop, crop_mask, defect_class, image_path, mask_path,
                     (int(top), int(left), int(bottom - top), int(right - left)), (height, width))

    def __len__(self) -> int:
        return len(self.donors)

    @property
    def classes(self) -> list[str]:
        """Sorted defect classes present in the bank."""
        return sorted({d.defect_class for d in self.donors})

    @property
    def donor_classes(self) -> list[str]:
        """Class of every donor, in bank order."""
        return [d.defect_class for d in self.donors]

    def tensors(self, channels: int, device: torch.device | str) -> list[tuple[Tensor, Tensor]]:
        """``(image [channels, h, w], mask [1, h, w])`` of every donor on ``device`` (cached)."""
        key = (channels, str(device))
        if key not in self._cache:
            self._cache[key] = [(to_channels(d.image[None], channels)[0].to(device), d.mask.to(device))
                                for d in self.donors]
        return self._cache[key]

    def window(self, index: int, size: int, channels: int) -> tuple[Tensor, Tensor]:
        """A ``size`` x ``size`` window of a donor's source image centred on its defect.

        Centred on the defect's bounding box, or on its nearest pixel when the window there would
        miss the defect (:meth:`Donor.window_center`), so every window holds defect pixels.

        The source is read again from disk (reflect-padded where the window leaves the image).

        Returns:
            ``(image [channels, size, size], mask [1, size, size])`` float in [0, 1].
        """
        donor = self.donors[index]
        image = torch.from_numpy(np.array(read_image(donor.path, channels=channels))).permute(2, 0, 1).float() / 255.0
        mask = torch.from_numpy(np.array(read_mask(donor.mask_path))).float()[None]
        center = donor.window_center(size)
        return cut_window(image, center, size), cut_window(mask, center, size, pad_mode="constant")


def cut_window(image: Tensor, center: tuple[int, int], size: int, pad_mode: str = "reflect") -> Tensor:
    """The ``size`` x ``size`` window of ``image`` ``[C, H, W]`` centred on ``center`` ``(y, x)``.

    Where the window leaves the image it is padded: ``pad_mode`` ``"reflect"`` (``"replicate"``
    when the image is too small to reflect), or ``"constant"`` (zeros, for masks).
    """
    top, left = center[0] - size // 2, center[1] - size // 2
    height, width = image.shape[-2:]
    pad = (max(-left, 0), max(left + size - width, 0), max(-top, 0), max(top + size - height, 0))
    if any(pad):
        mode = pad_mode if pad_mode == "constant" or max(pad) < min(height, width) else "replicate"
        image = torch.nn.functional.pad(image[None], pad, mode=mode)[0]
        top, left = top + pad[2], left + pad[0]
    return image[:, top:top + size, left:left + size]


def load_bank(bank: str | Path | DefectBank, classes: Sequence[str] | None = None) -> DefectBank:
    """Return ``bank`` as a :class:`DefectBank`.

    A path is loaded keeping only ``classes``. A bank already loaded is not filtered (the generator's
    class sampler draws only ``classes`` from it); it is checked to hold at least one of them.

    Raises:
        DefectBankError: A loaded bank holds none of ``classes``.
    """
    if isinstance(bank, DefectBank):
        if classes is not None:
            missing = [c for c in classes if c not in bank.classes]
            if len(missing) == len(list(classes)):
                raise DefectBankError(f"defect bank {bank.source}: no usable defects for classes {list(classes)}; "
                                      f"the bank has {dict(Counter(bank.donor_classes))}")
        return bank
    return DefectBank(bank, classes=classes)
