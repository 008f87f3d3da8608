"""PNG figures of the demo and benchmarks: ROC curves, error bars, donor | canvas | output | mask grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from anomalib_defectgan.data.image_io import read_image
from anomalib_defectgan.utils.atomic import atomic_path


def _save(figure: plt.Figure, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "") -> Path:
    """ROC curve per arm from ``{arm: (labels, scores)}``."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    for arm, (labels, scores) in curves.items():
        if len(np.unique(labels)) == 2:
            fpr, tpr, _ = roc_curve(labels, scores)
            axis.plot(fpr, tpr, label=arm)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=title or "ROC on real defects")
    axis.legend(loc="lower right")
    return _save(figure, path)


def error_bars(summary: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Bar chart of the test error per arm (mean, with std whiskers when there are several seeds)."""
    means = summary[("error", "mean")]
    stds = summary[("error", "std")].fillna(0.0)
    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.bar(list(means.index), means.to_numpy(), yerr=stds.to_numpy(), capsize=4, color="#4a7ab5")
    axis.set(ylabel="test error (1 - accuracy)", title=title or "Error on the new grade's real defects")
    axis.set_ylim(0, max(0.05, float((means + stds).max()) * 1.15))
    return _save(figure, path)


def image_grid(cells: Sequence[Sequence[np.ndarray | None]], columns: Sequence[str], row_labels: Sequence[str],
               path: Path, title: str = "") -> Path:
    """Grey uint8 images in a grid (None: an empty cell), column titles on top, a label per row."""
    figure, axes = plt.subplots(len(cells), len(columns), figsize=(1.5 * len(columns), 1.5 * len(cells)),
                                squeeze=False)
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if image is not None:
                axis.imshow(image, cmap="gray", vmin=0, vmax=255)
            if r == 0:
                axis.set_title(columns[c], fontsize=9)
            if c == 0:
                axis.set_ylabel(row_labels[r], fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def sample_grid(rows: Sequence[Mapping[str, str]], path: Path, size: int = 96) -> Path:
    """One row per sample: donor | canvas | output | mask (keys of each row are file paths)."""
    columns = ("donor", "canvas", "output", "mask")
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(1.6 * len(columns), 1.6 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, key in enumerate(columns):
            axis = axes[r][c]
            axis.axis("off")
            if row.get(key):
                axis.imshow(read_image(row[key], channels=1)[..., 0], cmap="gray", vmin=0, vmax=255)
            if r == 0:
                axis.set_title(key, fontsize=9)
    return _save(figure, path)
