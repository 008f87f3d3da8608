"""``defectgan benchmark steel-world``: rendering speed of the procedural steel world (img/s).

Measures, on one thread (``cv2.setNumThreads(1)``, so the number is per core), the time to
render good images, defect images (clean surface + defect + mask) and to PNG-encode them the way
the dataset writer does. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import io
import time

import cv2
import numpy as np
from PIL import Image

from anomalib_defectgan.data.steel_world.render import render_defect, render_good
from anomalib_defectgan.data.synthetic_steel import CLASSES, GRADE_NAMES


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def main(argv: list[str]) -> int:
    """Print img/s per grade (good), per class (defect), and PNG encoding."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark steel-world", description=__doc__)
    parser.add_argument("--size", type=int, default=256, help="image side (default: %(default)s)")
    parser.add_argument("--count", type=int, default=50, help="images per grade and per class (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default: %(default)s = per core)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    print(f"steel world, {args.size}x{args.size} px, {args.count} images each, {args.threads} OpenCV thread(s)")

    render_good(GRADE_NAMES[0], args.size, args.seed, -1)  # warm-up (OpenCV lazy init)
    good_total, good_time, images = 0, 0.0, []
    for grade in GRADE_NAMES:
        start = time.perf_counter()
        images += [render_good(grade, args.size, args.seed, i).image for i in range(args.count)]
        elapsed = time.perf_counter() - start
        good_total, good_time = good_total + args.count, good_time + elapsed
        print(f"  good {grade:<16} {_rate(args.count, elapsed):8.1f} img/s")
    defect_total, defect_time = 0, 0.0
    for position, defect_class in enumerate(CLASSES):
        grade = GRADE_NAMES[position % len(GRADE_NAMES)]
        start = time.perf_counter()
        images += [render_defect(defect_class, args.size, args.seed, i, [grade])[0].image for i in range(args.count)]
        elapsed = time.perf_counter() - start
        defect_total, defect_time = defect_total + args.count, defect_time + elapsed
        print(f"  defect {defect_class:<14} {_rate(args.count, elapsed):8.1f} img/s  (on {grade})")
    start = time.perf_counter()
    for image in images:
        Image.fromarray(np.ascontiguousarray(image[..., 0])).save(io.BytesIO(), format="PNG")
    encode_time = time.perf_counter() - start
    print(f"good images        {_rate(good_total, good_time):8.1f} img/s")
    print(f"defect images      {_rate(defect_total, defect_time):8.1f} img/s")
    print(f"PNG encoding       {_rate(len(images), encode_time):8.1f} img/s")
    overall = good_time + defect_time + encode_time
    print(f"render + encode    {_rate(len(images), overall):8.1f} img/s  ({len(images)} images)")
    return 0
