"""``defectgan benchmark gan-quality``: the command line of :mod:`anomalib_defectgan.benchmark.gan_quality`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from anomalib_defectgan.benchmark import gan_quality
from anomalib_defectgan.benchmark.gan_quality.report import format_report
from anomalib_defectgan.benchmark.results_table import json_safe
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.transfer_options import add_transfer_options


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark gan-quality", description=gan_quality.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True, help="exported generator folder (generator.safetensors + .json)")
    parser.add_argument("--manifest", required=True, help="manifest of REAL labelled images (train/val/test splits)")
    parser.add_argument("--new-grade", help="canvases: this grade's good images; donors: the other grades' defects "
                                            "(default: canvases of every grade, donors of another grade)")
    parser.add_argument("--num", type=int, default=256, help="generated samples per generator (default: %(default)s)")
    parser.add_argument("--crop", type=int, help="crop side (default: the generator's crop size)")
    parser.add_argument("--evaluator-steps", type=int, default=1000, help="evaluator training steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="evaluator / generator batch (default: %(default)s)")
    parser.add_argument("--val-crops", type=int, default=4, help="crops per val row for the reference accuracy")
    parser.add_argument("--repeats", type=int, default=20, help="random halves for the Frechet distances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here as JSON")
    add_transfer_options(parser, "defectgan", masks=False, composite=True)
    parser.add_argument("--figure", help="also write a donor | canvas | composite | output | mask grid (PNG) here")
    parser.add_argument("--figure-per-class", type=int, default=2, help="rows per defect class in --figure")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``defectgan benchmark gan-quality``."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    if args.num < 2:
        raise DefectGanError(f"--num must be at least 2, got {args.num}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = gan_quality.run(args)
    print(format_report(results))
    for note in results["notes"]:
        print(f"note: {note}")
    print(f"({results['seconds']:.0f} s: evaluator {results['evaluator']['seconds']:.0f} s, "
          f"generation {results['generation_seconds']:.0f} s)")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(json_safe(results), indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0
