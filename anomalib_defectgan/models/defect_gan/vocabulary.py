"""What a DefectGan is built for (vocabularies, image geometry, precision), checked against the data and checkpoints.

The checks raise :class:`~anomalib_defectgan.errors.DefectGanError` with the mismatch named, so
``defectgan fit`` reports them as one line instead of a shape error deep inside torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anomalib_defectgan.errors import DefectGanError

#: The hyper-parameters that fix the networks' shapes; taken from the data when not given.
VOCAB_FIELDS = ("classes", "grades", "channels", "crop_size")


def checked_vocab(hparams: Mapping[str, Any], classes: list[str], grades: list[str], channels: int,
                  crop_size: int) -> dict[str, Any]:
    """The data's vocabularies and geometry, checked against what ``hparams`` already fixed.

    Raises:
        DefectGanError: The class vocabulary does not start with ``good``, or the model was
            configured (or trained) for other vocabularies.
    """
    given = {"classes": list(classes), "grades": list(grades), "channels": int(channels), "crop_size": int(crop_size)}
    if given["classes"][:1] != ["good"]:
        raise DefectGanError(f"class vocabulary must start with 'good', got {list(classes)}")
    for name, value in given.items():
        current = hparams.get(name)
        if current not in (None, [], value):
            raise DefectGanError(
                f"model {name} {current} do not match the data's {value}: the model config (or checkpoint) "
                f"was made for other data; remove model.{name} from the config or use matching data")
    return given


def check_crop_size(crop_size: int, code_levels: int) -> None:
    """Refuse a crop size that is not a multiple of the networks' code stride."""
    stride = max(8, 2 ** (code_levels - 1))
    if crop_size % stride:
        raise DefectGanError(f"crop_size must be a multiple of {stride}, got {crop_size}")


def check_checkpoint(checkpoint: Mapping[str, Any], hparams: Mapping[str, Any] | None) -> None:
    """Refuse a checkpoint of another kind, or (``hparams`` given) of other vocabularies."""
    state = checkpoint.get("state_dict", {})
    saved = checkpoint.get("hyper_parameters", {})
    if not any(key.startswith("net_ema.") for key in state) or "classes" not in saved:
        raise DefectGanError("the checkpoint is not a DefectGan checkpoint (no EMA generator weights)")
    for name in VOCAB_FIELDS:
        if hparams is not None and saved.get(name) != hparams.get(name):
            raise DefectGanError(f"the checkpoint's {name} {saved.get(name)} do not match the data's "
                                 f"{hparams.get(name)}")


def check_precision(trainer: Any) -> None:
    """Refuse 16-bit mixed precision: its gradient scaler does not fit the manual D step."""
    precision = str(getattr(trainer, "precision", "32-true"))
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    if precision.startswith("16") or scaler is not None:
        raise DefectGanError(f"precision {precision!r} is not supported: use '32-true' or 'bf16-mixed'")
