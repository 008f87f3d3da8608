"""``defectgan configs``: list the shipped YAML configs, print where one is installed, or copy them.

``anomalib train -c FILE`` needs a file path; from a wheel install the shipped configs live inside
site-packages. ``defectgan configs --copy DIR`` puts them (or the named ones) into ``DIR`` with
their subfolders, so ``anomalib train -c DIR/classifier/synthetic_steel.yaml`` works from any folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.packaged_configs import config_file, describe, shipped_configs


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(prog="defectgan configs", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="shipped configs, e.g. classifier/synthetic_steel.yaml (default: all)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--path", action="store_true", help="print the installed path of each named config")
    action.add_argument("--copy", type=Path, metavar="DIR", help="copy the configs into DIR (with subfolders)")
    parser.add_argument("--overwrite", action="store_true", help="with --copy: replace files that differ")
    return parser


def main(argv: list[str]) -> int:
    """Run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    shipped = shipped_configs()
    if not shipped:
        raise DefectGanError("no shipped configs found: the installation is incomplete (reinstall the package)")
    chosen = {name: config_file(name) for name in args.names} if args.names else shipped
    if args.path:
        if not args.names:
            raise DefectGanError("--path needs config names, e.g. 'defectgan configs --path defect_gan/cpu.yaml'")
        print("\n".join(str(path) for path in chosen.values()))
        return 0
    if args.copy is None:
        width = max(len(name) for name in chosen)
        for name, path in chosen.items():
            print(f"{name:<{width}}  {describe(path)}")
        print(f"\ninstalled in {next(iter(chosen.values())).parents[1]}; "
              "'defectgan configs --copy DIR' copies them for 'anomalib train -c' and 'defectgan fit -c'")
        return 0
    targets = {name: args.copy / name for name in chosen}
    clashes = [str(target) for name, target in targets.items()
               if target.exists() and target.read_bytes() != chosen[name].read_bytes()]
    if clashes and not args.overwrite:
        raise DefectGanError(f"{clashes[0]} exists and differs from the shipped config ({len(clashes)} such "
                             "file(s)); pass --overwrite to replace them")
    for name, target in targets.items():
        atomic_write_text(target, chosen[name].read_text(encoding="utf-8"))
        print(target)
    print(f"copied {len(targets)} config(s) into {args.copy}", file=sys.stderr)
    return 0
