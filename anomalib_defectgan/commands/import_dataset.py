"""``defectgan import-dataset``: convert a public or in-house dataset into a manifest."""

from __future__ import annotations

import argparse
import inspect
import sys
import warnings

import pandas as pd

from anomalib_defectgan.data.datasets import FORMATS, get_adapter
from anomalib_defectgan.errors import DefectGanError

SPLITS = ("train", "val", "test")

# CLI option -> keyword of the adapters' to_manifest; an adapter without the keyword rejects it.
FORMAT_OPTIONS = {
    "seed": "seed",
    "split": "fractions",
    "grade": "grade",
    "tile_size": "tile_size",
    "background_tiles": "background_tiles",
    "defect_class": "defect_class",
}


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.7,0.15,0.15, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers (train,val,test), got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the command."""
    parser = argparse.ArgumentParser(
        prog="defectgan import-dataset",
        description="Convert a dataset into OUT/manifest.csv (+ PNG masks and tiles). See docs/datasets.md.",
    )
    parser.add_argument("--format", required=True, help=f"one of: {', '.join(FORMATS)}")
    parser.add_argument("--root", required=True, help="the dataset folder")
    parser.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    group = parser.add_argument_group("format options (default: the adapter's)")
    group.add_argument("--seed", type=int, help="seed of the split and tile positions (default 0)")
    group.add_argument(
        "--split", type=_fractions, metavar="TRAIN,VAL,TEST", help="split fractions (default 0.7,0.15,0.15)"
    )
    group.add_argument("--grade", help="grade (material) name of every row (not aitex: fabric code)")
    group.add_argument(
        "--tile-size", type=int, help="tile side in px (severstal, aitex: 256; neu-det, sd-saliency: 64)"
    )
    group.add_argument(
        "--background-tiles",
        type=int,
        help="good tiles per image outside defects (neu-det: 0, sd-saliency: 2)",
    )
    group.add_argument("--defect-class", help="class name of defect rows (ksdd2: defect)")
    return parser


def summary(frame: pd.DataFrame) -> str:
    """Rows per class, per grade and per split, as printable tables."""
    parts = [
        f"{len(frame)} rows: "
        + ", ".join(f"{n} {label}" for label, n in frame["label"].value_counts().items())
    ]
    for column in ("defect_class", "grade"):
        table = pd.crosstab(frame[column], frame["split"], margins=True, margins_name="total")
        parts.append(table.to_string())
    return "\n\n".join(parts)


def empty_splits(frame: pd.DataFrame, fractions: tuple[float, ...] = (1.0, 1.0, 1.0)) -> list[str]:
    """The splits among train, val and test that were asked for (fraction > 0) and hold no row."""
    counts = frame["split"].value_counts()
    return [split for split, fraction in zip(SPLITS, fractions, strict=True)
            if fraction > 0 and counts.get(split, 0) == 0]


def main(argv: list[str]) -> int:
    """Run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    adapter = get_adapter(args.format)
    accepted = inspect.signature(adapter.to_manifest).parameters
    options = {}
    for option, keyword in FORMAT_OPTIONS.items():
        value = getattr(args, option)
        if value is None:
            continue
        if keyword not in accepted:
            raise DefectGanError(f"--{option.replace('_', '-')} does not apply to format {args.format}")
        options[keyword] = value
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = adapter.to_manifest(args.root, args.out, overwrite=args.overwrite, **options)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    default = accepted["fractions"].default if "fractions" in accepted else (1.0, 1.0, 1.0)
    empty = empty_splits(frame, tuple(options.get("fractions", default)))
    if empty:
        print(f"warning: split(s) {', '.join(empty)} of {args.out}/manifest.csv hold no row: {len(frame)} rows are "
              "too few for the split fractions (whole source images go to one split); add images or change "
              "--split (e.g. 0.5,0.25,0.25)", file=sys.stderr)
    print(f"wrote {args.out}/manifest.csv\n")
    print(summary(frame))
    return 0
