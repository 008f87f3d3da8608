"""``defectgan export``: write the generator's transfer graph as OpenVINO IR.

Writes ``OUT/transfer.xml`` + ``transfer.bin`` and ``OUT/transfer.json`` (precision, vocabularies,
crop size, checkpoint hash). ``DefectTransferGenerator(..., backend="openvino",
openvino_model="OUT/transfer.xml")`` runs it. (The anomaly *classifier* is exported with
``anomalib export``, not with this command.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anomalib_defectgan.errors import DefectGanError


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(prog="defectgan export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="Generator folder (generator.safetensors + generator.json) or either file.")
    parser.add_argument("--out", required=True, type=Path, help="Output folder for transfer.xml/.bin/.json.")
    parser.add_argument("--fp16", action="store_true", help="Store the weights in FP16.")
    return parser


def main(argv: list[str]) -> int:
    """Run ``defectgan export``; see ``--help``."""
    from anomalib_defectgan.generators.openvino_backend import export_openvino

    args = build_parser().parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise DefectGanError(f"--out {args.out}: exists and is not a folder")
    xml = export_openvino(args.checkpoint, args.out, fp16=args.fp16)
    print(f"defectgan export: wrote {xml} ({'FP16' if args.fp16 else 'FP32'} weights)")
    return 0
