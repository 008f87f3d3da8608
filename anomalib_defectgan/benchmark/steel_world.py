"""``defectgan benchmark steel-world``: rendering speed of the procedural steel world (img/s).

Measures, on one thread (``cv2.setNumThreads(1)``, so the number is per core), rendering good
images, defect images (clean surface + defect + mask) and PNG-encoding them the way the dataset
writer does (PIL, via :func:`~anomalib_defectgan.data.image_io.write_image`). Nothing is written
to disk. Two rates are printed: per wall-clock second, and per CPU second of this process; on a
machine shared with other jobs the second is the fairer per-core figure.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from anomalib_defectgan.data.steel_world.render import render_defect, render_good
from anomalib_defectgan.data.synthetic_steel import CLASSES, GRADE_NAMES


class _Clock:
    """Accumulates wall and CPU seconds over several timed blocks."""

    def __init__(self) -> None:
        self.count, self.wall, self.cpu = 0, 0.0, 0.0

    def time(self, count: int, work: Callable[[], object]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.count, self.wall, self.cpu = self.count + count, self.wall + wall, self.cpu + cpu
        return count / max(wall, 1e-9), count / max(cpu, 1e-9)

    def rates(self) -> str:
        return f"{self.count / max(self.wall, 1e-9):8.1f} img/s wall  {self.count / max(self.cpu, 1e-9):8.1f} img/s CPU"


def main(argv: list[str]) -> int:
    """Print img/s per grade (good), per class (defect), for PNG encoding and overall."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark steel-world", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side (default: %(default)s)")
    parser.add_argument("--count", type=int, default=50, help="images per grade and per class (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default: %(default)s = per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--masks", action="store_true",
                        help="also report mask area and the mask IoU of paired renderings per class")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    print(f"steel world, {args.size}x{args.size} px, {args.count} images each, {args.threads} OpenCV thread(s)")

    render_good(GRADE_NAMES[0], args.size, args.seed, -1)  # warm-up (OpenCV lazy initialisation)
    images: list[np.ndarray] = []
    good, defect, encode = _Clock(), _Clock(), _Clock()
    for grade in GRADE_NAMES:
        wall, cpu = good.time(args.count, lambda grade=grade: images.extend(
            render_good(grade, args.size, args.seed, i).image for i in range(args.count)))
        print(f"  good   {grade:<16} {wall:8.1f} img/s wall  {cpu:8.1f} img/s CPU")
    for position, defect_class in enumerate(CLASSES):
        grade = GRADE_NAMES[position % len(GRADE_NAMES)]
        wall, cpu = defect.time(args.count, lambda defect_class=defect_class, grade=grade: images.extend(
            render_defect(defect_class, args.size, args.seed, i, [grade])[0].image for i in range(args.count)))
        print(f"  defect {defect_class:<16} {wall:8.1f} img/s wall  {cpu:8.1f} img/s CPU  (on {grade})")

    def encode_all() -> None:
        for image in images:
            Image.fromarray(np.ascontiguousarray(image[..., 0])).save(io.BytesIO(), format="PNG")

    encode.time(len(images), encode_all)
    total = _Clock()
    total.count = len(images)
    total.wall, total.cpu = good.wall + defect.wall + encode.wall, good.cpu + defect.cpu + encode.cpu
    print(f"good images             {good.rates()}")
    print(f"defect images           {defect.rates()}")
    print(f"PNG encoding (PIL)      {encode.rates()}")
    print(f"render + encode         {total.rates()}  ({len(images)} images)")
    if args.masks:
        _mask_report(args.size, args.seed, args.count)
    return 0


def _mask_report(size: int, seed: int, count: int) -> None:
    """Mask area (% of the image) and IoU of the two masks of a paired rendering, per class."""
    print(f"masks: {count} instances per class, each rendered onto grade j and grade j+1")
    for defect_class in CLASSES:
        areas, ious = [], []
        for index in range(count):
            first = GRADE_NAMES[index % len(GRADE_NAMES)]
            second = GRADE_NAMES[(index + 1) % len(GRADE_NAMES)]
            a, b = (sample.mask for sample in render_defect(defect_class, size, seed, index, [first, second]))
            areas.append(100 * a.mean())
            ious.append((a & b).sum() / (a | b).sum())
        print(f"  {defect_class:<16} area {np.mean(areas):5.1f}% (min {np.min(areas):4.2f}%)  "
              f"pair IoU mean {np.mean(ious):.2f} min {np.min(ious):.2f}")
