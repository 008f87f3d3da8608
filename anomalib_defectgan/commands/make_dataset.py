"""``defectgan make-dataset``: render the procedural steel world (the embedded default dataset)."""

from __future__ import annotations

import argparse

from anomalib_defectgan.data.synthetic_steel import CLASSES, GRADE_NAMES, make_synthetic_steel


def build_parser() -> argparse.ArgumentParser:
    """The command's options; defaults match :func:`make_synthetic_steel`."""
    parser = argparse.ArgumentParser(
        prog="defectgan make-dataset",
        description="Render the procedural steel world: an MVTec-like folder per grade "
                    "(train/good, test/good, test/<class>, ground_truth/<class>) plus manifest.csv.",
    )
    parser.add_argument("--out", default="datasets/synthetic_steel", help="output folder (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=20,
                        help="defect images per grade and class (default: %(default)s)")
    parser.add_argument("--good-per-grade", type=int, default=40,
                        help="good images per grade, ~80%% train/good, ~20%% test/good (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: %(default)s)")
    parser.add_argument("--paired", action="store_true",
                        help="also render every defect instance onto the next grade (same geometry, shared pair_id)")
    parser.add_argument("--grades", nargs="+", metavar="GRADE", help=f"grades to render (default: all: {' '.join(GRADE_NAMES)})")
    parser.add_argument("--classes", nargs="+", metavar="CLASS", help=f"defect classes (default: all: {' '.join(CLASSES)})")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 = grey (default), 3 = RGB")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str]) -> int:
    """Run the command; user errors raise :class:`~anomalib_defectgan.errors.DefectGanError`."""
    args = build_parser().parse_args(argv)
    frame = make_synthetic_steel(
        out=args.out,
        size=args.size,
        per_class=args.per_class,
        good_per_grade=args.good_per_grade,
        seed=args.seed,
        paired=args.paired,
        grades=args.grades,
        classes=args.classes,
        channels=args.channels,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    defects = int((frame["label"] == "defect").sum())
    print(f"wrote {len(frame)} images ({defects} defect, {len(frame) - defects} good) of "
          f"{frame['grade'].nunique()} grades to {args.out} (manifest: {args.out}/manifest.csv)")
    return 0
