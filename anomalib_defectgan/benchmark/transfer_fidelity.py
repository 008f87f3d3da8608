"""``defectgan benchmark transfer-fidelity``: how close a painting comes to the same defect on the new grade.

The procedural steel world draws a defect's geometry independently of the grade it lies on, so
one instance can be rendered on a donor grade and on the new grade
(:func:`~anomalib_defectgan.data.steel_world.render.render_defect` with two grades): the second
rendering is the answer a transfer should give. Each donor is painted onto the new grade's clean
surface under that answer, in the window the bank cuts around the defect, by CutPaste's and NSA's
blends (:func:`~anomalib_defectgan.generators.blending.blend_defect`, placement and scale fixed),
every composite mode (:func:`~anomalib_defectgan.data.blending.composite`, the GAN's input) and a
trained GAN (``--generator``: its painting as shipped, G's change included). Measured over the
defect's pixels on either grade, grown by :data:`REGION_GROWTH` px:

* **error**: mean ``|painted - truth|`` over mean ``|canvas - truth|``; 0 is the truth, 1 is no
  better than painting nothing;
* **saliency**: mean ``|painted - canvas|`` over mean ``|truth - canvas|``; 1 is as strong as the
  real defect on the new grade; above 1, a classifier trained on the paintings learns to expect
  stronger defects than the real ones.

Mean over instances per class, per donor grade and overall. Steel world only: real data has no
second rendering of a defect, so on a plant's own data ``new-grade`` and ``gan-quality`` judge.
Deterministic: the same options give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from anomalib_defectgan.data.blending import COMPOSITE_MODES, composite, dilate
from anomalib_defectgan.data.image_io import write_image
from anomalib_defectgan.data.manifest import write_manifest
from anomalib_defectgan.data.steel_world.render import SteelSample, render_defect
from anomalib_defectgan.data.synthetic_steel import CLASSES, GRADE_NAMES
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.generators.blending import blend_defect
from anomalib_defectgan.generators.defect_bank import DefectBank, cut_window
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.transfer_options import add_transfer_options, transfer_settings

#: Pixels the defect's region (its pixels on the donor grade or the new grade) is grown by.
REGION_GROWTH = 3
#: A painting: ``(target, donor, mask)`` windows ``[N, C, c, c]`` -> the painted targets.
Painting = Callable[[Tensor, Tensor, Tensor], Tensor]


def _per_window(blend: str) -> Painting:
    def paint(target: Tensor, donor: Tensor, mask: Tensor) -> Tensor:
        return torch.stack([blend_defect(t, d, m, blend) for t, d, m in zip(target, donor, mask, strict=True)])
    return paint


def _composite(mode: str) -> Painting:
    return lambda target, donor, mask: composite(target, donor, mask, mode)[0]


#: The paintings without a GAN, by the name the report gives them.
PAINTINGS: dict[str, Painting] = {"cutpaste": _per_window("feather"), "nsa": _per_window("poisson"),
                                  **{f"composite {mode}": _composite(mode) for mode in COMPOSITE_MODES}}


def _grey(pixels: np.ndarray) -> Tensor:
    """``uint8 [H, W, 1]`` -> ``[1, H, W]`` float in [0, 1]."""
    return torch.from_numpy(pixels[..., 0].astype(np.float32) / 255.0)[None]


def render_pairs(out: Path, new_grade: str, size: int, per_class: int,
                 seed: int) -> tuple[Path, dict[str, tuple[str, str, SteelSample]]]:
    """Render every class on every other grade and on ``new_grade``; write the donors as a bank.

    Returns:
        The donors' manifest, and per donor image path its ``(donor grade, class, truth)``.
    """
    rows, truths = [], {}
    for donor_grade in (g for g in GRADE_NAMES if g != new_grade):
        for defect_class in CLASSES:
            for index in range(per_class):
                donor, truth = render_defect(defect_class, size, seed, index, [donor_grade, new_grade])
                stem = out / donor_grade / defect_class / f"{index:03d}"
                image, mask = stem.with_suffix(".png"), stem.parent / f"{index:03d}_mask.png"
                write_image(image, donor.image)
                write_image(mask, donor.mask)
                rows.append({"image_path": str(image), "mask_path": str(mask), "label": "defect",
                             "defect_class": defect_class, "grade": donor_grade, "split": "train",
                             "source": "steel_world_pairs", "mask_kind": "pixel"})
                truths[str(image.resolve())] = (donor_grade, defect_class, truth)
    return write_manifest(pd.DataFrame(rows), out / "manifest.csv"), truths


def _truth_windows(bank: DefectBank, truths: dict[str, tuple[str, str, SteelSample]], window: int) -> dict[str, Tensor]:
    """Per donor of ``bank``, in the window the bank cuts around its defect: the donor, its mask, the
    new grade's clean surface, the truth, and the region scored (``[N, 1, c, c]`` bool)."""
    parts: dict[str, list[Tensor]] = {"canvas": [], "truth": [], "donor": [], "donor_mask": [], "region": []}
    for index, donor in enumerate(bank.donors):
        _, _, truth = truths[str(Path(donor.path).resolve())]
        center = donor.window_center(window)
        donor_image, donor_mask = bank.window(index, window, channels=1)
        parts["canvas"].append(cut_window(_grey(truth.clean), center, window))
        parts["truth"].append(cut_window(_grey(truth.image), center, window))
        parts["donor"].append(donor_image)
        parts["donor_mask"].append(donor_mask)
        truth_mask = cut_window(torch.from_numpy(truth.mask).float()[None], center, window, pad_mode="constant")
        parts["region"].append(torch.maximum(truth_mask, donor_mask))
    stacked = {name: torch.stack(values) for name, values in parts.items()}
    stacked["region"] = dilate(stacked["region"], REGION_GROWTH) > 0.5
    return stacked


def score(painted: Tensor, canvas: Tensor, truth: Tensor, region: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per window: ``(error, saliency)`` as defined in the module doc (``region`` ``[N, 1, c, c]`` bool)."""
    count = region.flatten(1).sum(1).clamp_min(1)

    def mean_abs(x: Tensor) -> Tensor:
        return (x.abs() * region).flatten(1).sum(1) / count

    reference = mean_abs(truth - canvas).clamp_min(1e-6)
    return (mean_abs(painted - truth) / reference).numpy(), (mean_abs(painted - canvas) / reference).numpy()


def run(out: Path, new_grade: str = "pickled", size: int = 128, per_class: int = 8, window: int = 64, seed: int = 0,
        generator: str | None = None, transfer: dict | None = None) -> pd.DataFrame:
    """Render the pairs, paint every donor every way, and return one row per (painting, donor).

    Raises:
        DefectGanError: An unknown grade, a window larger than the images, or a generator that
            cannot paint these donors (its own message).
    """
    if new_grade not in GRADE_NAMES:
        raise DefectGanError(f"unknown steel-world grade {new_grade!r}; grades: {', '.join(GRADE_NAMES)}")
    if not 16 <= window <= size:
        raise DefectGanError(f"--window {window} must be between 16 and the image size {size}")
    if per_class < 1:
        raise DefectGanError(f"--per-class must be at least 1, got {per_class}")
    with tempfile.TemporaryDirectory(prefix="pairs_", dir=out) as folder:
        manifest, truths = render_pairs(Path(folder), new_grade, size, per_class, seed)
        bank = DefectBank(manifest)
        paintings: dict[str, Tensor] = {}
        windows = _truth_windows(bank, truths, window)
        with torch.no_grad():
            for name, paint in PAINTINGS.items():
                paintings[name] = paint(windows["canvas"], windows["donor"], windows["donor_mask"])
            if generator is not None:
                from anomalib_defectgan.generators.factory import build_generator

                settings = {**(transfer or {}), "window": window, "cache_dir": Path(folder) / "codes"}
                gan = build_generator("defectgan", bank, generator, seed=seed, transfer=settings)
                paintings["defectgan"] = gan.paint_windows(windows["canvas"], list(range(len(bank))))[0]
        rows = []
        for name, painted in paintings.items():
            errors, saliencies = score(painted, windows["canvas"], windows["truth"], windows["region"])
            for donor, error, saliency in zip(bank.donors, errors, saliencies, strict=True):
                donor_grade, defect_class, _ = truths[str(Path(donor.path).resolve())]
                rows.append({"painting": name, "donor_grade": donor_grade, "defect_class": defect_class,
                             "error": float(error), "saliency": float(saliency)})
    return pd.DataFrame(rows)


def report(frame: pd.DataFrame, title: str) -> str:
    """Markdown: error and saliency per painting, per class and donor grade and overall."""
    paintings = list(dict.fromkeys(frame["painting"]))
    lines = [f"# {title}", "", "error: mean |painted - truth| / mean |canvas - truth| (0 = the truth, 1 = nothing "
             "painted); saliency: mean |painted - canvas| / mean |truth - canvas| (1 = as strong as the real defect)",
             "", "| | " + " | ".join(f"{p} error | saliency" for p in paintings) + " |",
             "| --- |" + " --- | --- |" * len(paintings)]
    groups = [("defect_class", c) for c in dict.fromkeys(frame["defect_class"])]
    groups += [("donor_grade", g) for g in dict.fromkeys(frame["donor_grade"])] + [(None, "all")]
    for column, value in groups:
        part = frame if column is None else frame[frame[column] == value]
        means = part.groupby("painting")[["error", "saliency"]].mean()
        label = f"**{value}**" if column is None else (value if column == "defect_class" else f"from {value}")
        lines.append(f"| {label} | " + " | ".join(f"{means.loc[p, 'error']:.3f} | {means.loc[p, 'saliency']:.2f}"
                                                 for p in paintings) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defectgan benchmark transfer-fidelity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-grade", default="pickled", help="the grade painted on (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="steel-world image side (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=8,
                        help="instances per class and donor grade (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="steel-world seed (default: %(default)s)")
    parser.add_argument("--generator", help="a trained generator folder: add its painting (G's change included)")
    parser.add_argument("--out", default="results/benchmark_transfer_fidelity")
    add_transfer_options(parser, "defectgan painting", masks=False, composite=True, placement=False)
    parser.set_defaults(window=64)
    return parser


def main(argv: list[str]) -> int:
    """Run the benchmark; write ``results.md`` and ``results.json`` to ``--out`` and print the table."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    transfer = {k: v for k, v in transfer_settings(args).items() if k != "window"}
    frame = run(out, args.new_grade, args.size, args.per_class, args.window, args.seed, args.generator, transfer)
    title = (f"Transfer fidelity onto {args.new_grade} ({args.size} px, {args.per_class} per class and donor grade, "
             f"{args.window} px windows, seed {args.seed})")
    if args.generator:
        title += f"; defectgan: {args.generator} {transfer}"
    text = report(frame, title)
    summary = frame.groupby("painting")[["error", "saliency"]].mean().to_dict(orient="index")
    atomic_write_text(out / "results.md", text)
    atomic_write_text(out / "results.json", json.dumps({"title": title, "overall": summary,
                                                         "rows": frame.to_dict(orient="records")}, indent=1))
    print(text)
    return 0
