"""The few-shot patch protocol (SD-saliency-900 and any manifest with pixel masks).

Images are cut into square patches: a defect patch centred on each defect, clean patches that
contain no defect pixel. Per class, ``test_per_class`` images are held out: their defect
patches and clean patches form the test split. Training uses clean patches of the other images
and only ``shots`` real defect images per class, either directly (arm ``none``, with the same
flips every arm gets) or as donors for the generators. Validation: a fifth of the training
clean patches plus copies of the donor patches (the same for every arm; the generator arms
replace them by synthetic defects). With ``shots`` real defects per class there are no others,
so the ``none`` arm picks its threshold on copies of its own training shots (a manifest cannot
list one file twice, hence the ``_val`` copies).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from anomalib_defectgan.benchmark.new_grade_protocol import NewGradeSplit
from anomalib_defectgan.data.crops import crop_window
from anomalib_defectgan.data.image_io import read_image, read_mask, write_image
from anomalib_defectgan.errors import DefectGanError


def clean_windows(mask: np.ndarray, size: int) -> np.ndarray:
    """Top-left corners ``[N, 2]`` (y, x) of every ``size`` window that holds no mask pixel."""
    if mask.shape[0] < size or mask.shape[1] < size:
        return np.zeros((0, 2), int)
    total = cv2.integral(mask.astype(np.uint8))
    sums = total[size:, size:] - total[:-size, size:] - total[size:, :-size] + total[:-size, :-size]
    return np.argwhere(sums == 0)


def _write_patch(image: np.ndarray, mask: np.ndarray, top: int, left: int, size: int, stem: str, out: Path,
                 row: pd.Series, label: str) -> dict:
    path = out / "patches" / f"{stem}.png"
    write_image(path, image[top:top + size, left:left + size])
    mask_path = ""
    if label == "defect":
        mask_path = str(out / "patches" / f"{stem}_mask.png")
        write_image(mask_path, mask[top:top + size, left:left + size])
    return {"image_path": str(path), "mask_path": mask_path, "label": label,
            "defect_class": row["defect_class"] if label == "defect" else "good", "grade": row["grade"],
            "split": "train", "source": f"{row['source']}-patches", "mask_kind": "pixel" if mask_path else "none",
            "origin_path": row["image_path"]}


def few_shot_patch_split(frame: pd.DataFrame, out: str | Path, patch: int = 128, test_per_class: int = 100,
                         shots: int = 10, clean_per_image: int = 2, seed: int = 0,
                         min_test_goods: int = 0) -> NewGradeSplit:
    """Cut patches and split them for the few-shot protocol.

    Args:
        frame: Manifest rows; defect rows with pixel masks are used (good rows are ignored).
        out: Folder for the patch PNGs.
        patch: Patch side in pixels.
        test_per_class: Defect images per class held out for testing.
        shots: Real defect images per class available for training.
        clean_per_image: Clean patches cut from each training image at most.
        seed: Seed of the held-out choice, the shots and the patch positions.
        min_test_goods: Each held-out image gives one clean test patch where it has a clean
            window; when that makes fewer than this many, further training images (taken in turn
            from each class, in a seeded order) give their clean patch to the test split instead
            and nothing to training.

    Raises:
        DefectGanError: A class with fewer than ``test_per_class + shots`` images.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    defects = frame[(frame["label"] == "defect") & (frame["mask_path"] != "")]
    plans: list[tuple[int, pd.Series, str]] = []
    for defect_class, group in sorted(defects.groupby("defect_class")):
        if len(group) < test_per_class + shots:
            raise DefectGanError(f"class {defect_class!r} has {len(group)} images; the protocol needs "
                                 f"test_per_class + shots = {test_per_class + shots}")
        order = group.loc[rng.permutation(group.index)]
        for rank, (index, row) in enumerate(order.iterrows()):
            role = "test" if rank < test_per_class else "donor" if rank < test_per_class + shots else "train_good"
            plans.append((index, row, role))
    masks = {index: read_mask(row["mask_path"]) for index, row, role in plans if role != "donor"}
    has_clean = {index: len(clean_windows(mask, patch)) > 0 for index, mask in masks.items()}
    deficit = min_test_goods - sum(has_clean[index] for index, _, role in plans if role == "test")
    if deficit > 0:
        by_class = [[k for k, (index, row, role) in enumerate(plans) if role == "train_good" and has_clean[index]
                     and row["defect_class"] == name] for name in sorted(set(defects["defect_class"]))]
        for k in [k for turn in itertools.zip_longest(*by_class) for k in turn if k is not None][:deficit]:
            plans[k] = (plans[k][0], plans[k][1], "test_clean")
    roles: dict[str, list[dict]] = {"test": [], "train_good": [], "donor": [], "val_defect": []}
    for index, row, role in plans:
        image = read_image(row["image_path"], channels=1)
        mask = read_mask(row["mask_path"], image.shape[:2])
        if min(mask.shape) < patch:
            raise DefectGanError(f"{row['image_path']}: image smaller than the {patch}px patch")
        stem = f"r{index}_{Path(row['image_path']).stem}"  # unique: file names repeat across folders
        if role in ("test", "donor"):
            ys, xs = np.nonzero(mask)
            top, left = crop_window(mask.shape, patch, (int(ys.mean()), int(xs.mean())))
            roles[role].append(_write_patch(image, mask, top, left, patch, f"{stem}_defect", out, row, "defect"))
            if role == "donor":
                roles["val_defect"].append(_write_patch(image, mask, top, left, patch, f"{stem}_defect_val", out,
                                                        row, "defect"))
        if role != "donor":
            corners = clean_windows(mask, patch)
            target = "train_good" if role == "train_good" else "test"
            for k, pick in enumerate(rng.permutation(len(corners))[:clean_per_image if role == "train_good" else 1]):
                top, left = corners[pick]
                roles[target].append(_write_patch(image, mask, int(top), int(left), patch, f"{stem}_clean{k}", out,
                                                  row, "good"))
    test, goods, donors, val_defects = (pd.DataFrame(roles[k]) for k in ("test", "train_good", "donor", "val_defect"))
    if goods.empty or (test["label"] == "good").sum() == 0:
        raise DefectGanError(f"no clean {patch}px patches found: use a smaller patch")
    val_goods = goods.sample(frac=0.2, random_state=seed)
    return NewGradeSplit(train_goods=goods.drop(val_goods.index), val=pd.concat([val_goods, val_defects]), test=test,
                         donors=donors)
