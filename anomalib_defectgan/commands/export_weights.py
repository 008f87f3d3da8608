"""``defectgan export-weights --ckpt CKPT --out DIR``: standalone generator from a fit checkpoint.

Writes ``DIR/generator.safetensors`` (EMA encoder + generator) and ``DIR/generator.json`` (network
config, classes, grades, channels, crop size, kind and format version). The checkpoint is read
with ``weights_only=True``; nothing is written unless it is a DefectGan checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anomalib_defectgan.errors import DefectGanError


def load_defectgan_checkpoint(path: str | Path) -> Any:
    """Load a :class:`DefectGan` from a Lightning checkpoint without unpickling code.

    Raises:
        DefectGanError: The file is missing, unreadable, or not a DefectGan checkpoint.
    """
    import torch

    from anomalib_defectgan.models.defect_gan import DefectGan

    path = Path(path)
    if not path.is_file():
        raise DefectGanError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DefectGanError(f"{path}: not a checkpoint that loads with weights_only=True "
                             f"({type(err).__name__})") from err
    if not isinstance(checkpoint, dict):
        raise DefectGanError(f"{path}: not a Lightning checkpoint")
    state = checkpoint.get("state_dict", {})
    hparams = checkpoint.get("hyper_parameters", {})
    if not any(str(key).startswith("net_ema.") for key in state) or not hparams.get("classes"):
        raise DefectGanError(f"{path}: not a DefectGan checkpoint (no EMA generator weights / vocabularies); "
                             "for a DefectClassifier checkpoint use 'anomalib export'")
    init = {key: value for key, value in hparams.items() if not key.startswith("_")}
    try:
        model = DefectGan(**init)
        model.load_state_dict(state)
    except (TypeError, RuntimeError) as err:
        raise DefectGanError(f"{path}: checkpoint does not fit DefectGan ({str(err).splitlines()[0]})") from err
    return model.eval()


def main(argv: list[str]) -> int:
    """Parse arguments and export the generator."""
    parser = argparse.ArgumentParser(prog="defectgan export-weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="Lightning checkpoint written by 'defectgan fit'.")
    parser.add_argument("--out", required=True, help="Output folder for generator.safetensors + generator.json.")
    args = parser.parse_args(argv)
    model = load_defectgan_checkpoint(args.ckpt)
    weights = model.export_generator(args.out)
    print(f"wrote {weights} and {weights.with_suffix('.json')}")
    return 0
