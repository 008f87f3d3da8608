"""The schema of ``generator.json``: types, ranges and consistency with the weights, checked before use.

A generator folder may come from another machine or be edited by hand. Every value is checked
here, with an error that names the key, before a network is built from it: a ``crop_size`` of 1e9
or a ``base_channels`` of 1e7 would otherwise fail deep inside torch (or try to allocate exabytes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_gan.torch_model import (
    CHANGE_REGIONS,
    COMPOSITE_MODES,
    DEFECT_PATHS,
    DefectGanNet,
)

MAX_CROP = 4096
MAX_WIDTH = 4096

_INT_RANGES: dict[str, tuple[int, int]] = {
    "channels": (1, 3), "num_classes": (2, 10_000), "num_grades": (1, 10_000), "base_channels": (1, 1024),
    "max_channels": (1, MAX_WIDTH), "zd_channels": (1, 1024), "sd_dim": (1, MAX_WIDTH), "zt_dim": (1, MAX_WIDTH),
    "w_dim": (1, MAX_WIDTH), "embed_dim": (1, MAX_WIDTH), "mapping_layers": (0, 16), "code_levels": (2, 5),
    "region_dilation": (0, 64),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "mask_bias": (-20.0, 20.0), "composite_feather": (0.0, 64.0), "region_feather": (0.0, 64.0),
}
_CHOICES: dict[str, tuple[str, ...]] = {"defect_path": DEFECT_PATHS, "composite_mode": COMPOSITE_MODES,
                                        "change_region": CHANGE_REGIONS}
_BOOLS = ("canvas_skip",)


def _int(source: Path, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DefectGanError(f"{source}: {key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise DefectGanError(f"{source}: {key} is {value}, expected {low}..{high}")
    return value


def _names(source: Path, key: str, value: Any, minimum: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DefectGanError(f"{source}: {key} must be a list of names, got {value!r}")
    if len(value) < minimum or len(set(value)) != len(value):
        raise DefectGanError(f"{source}: {key} must hold at least {minimum} distinct names, got {value}")
    return value


def check_config(meta: dict[str, Any], source: Path) -> dict[str, Any]:
    """Check the network config and the metadata of a ``generator.json``.

    Args:
        meta: The parsed JSON (kind and format version already checked).
        source: The file, for messages.

    Returns:
        ``meta["config"]``, checked.

    Raises:
        DefectGanError: A missing, unknown, mistyped or out-of-range key, or keys that contradict
            each other (channels, class and grade counts, crop size and code stride).
    """
    for key in ("config", "classes", "grades", "channels", "crop_size"):
        if key not in meta:
            raise DefectGanError(f"{source}: the key {key!r} is missing")
    config = meta["config"]
    if not isinstance(config, dict):
        raise DefectGanError(f"{source}: config must be an object, got {type(config).__name__}")
    known = set(_INT_RANGES) | set(_FLOAT_RANGES) | set(_CHOICES) | set(_BOOLS)
    unknown = sorted(set(config) - known)
    if unknown:
        raise DefectGanError(f"{source}: config key {unknown[0]!r} is not a DefectGan setting (known: {sorted(known)})")
    for key, (low, high) in _INT_RANGES.items():
        if key in config:
            _int(source, f"config.{key}", config[key], low, high)
    for key, (low, high) in _FLOAT_RANGES.items():
        value = config.get(key, low)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise DefectGanError(f"{source}: config.{key} is {value!r}, expected a number in {low}..{high}")
    for key, choices in _CHOICES.items():
        if key in config and config[key] not in choices:
            raise DefectGanError(f"{source}: config.{key} is {config[key]!r}, expected one of {list(choices)}")
    for key in _BOOLS:
        if key in config and not isinstance(config[key], bool):
            raise DefectGanError(f"{source}: config.{key} must be true or false, got {config[key]!r}")
    if config.get("max_channels", 64) < config.get("base_channels", 16):
        raise DefectGanError(f"{source}: config.max_channels {config.get('max_channels', 64)} is below "
                             f"config.base_channels {config.get('base_channels', 16)}")

    classes = _names(source, "classes", meta["classes"], 2)
    grades = _names(source, "grades", meta["grades"], 1)
    channels = _int(source, "channels", meta["channels"], 1, 3)
    if channels not in (1, 3) or config.get("channels", 1) != channels:
        raise DefectGanError(f"{source}: channels {channels} and config.channels {config.get('channels', 1)} "
                             "must agree and be 1 or 3")
    if config.get("num_classes", 2) != len(classes):
        raise DefectGanError(f"{source}: config.num_classes {config.get('num_classes', 2)} does not match the "
                             f"{len(classes)} classes {classes}")
    if config.get("num_grades", 1) != len(grades):
        raise DefectGanError(f"{source}: config.num_grades {config.get('num_grades', 1)} does not match the "
                             f"{len(grades)} grades {grades}")
    stride = 2 ** (config.get("code_levels", 4) - 1)
    crop = _int(source, "crop_size", meta["crop_size"], stride, MAX_CROP)
    if crop % stride:
        raise DefectGanError(f"{source}: crop_size {crop} is not a multiple of the code stride {stride}")
    critic = meta.get("critic")
    if critic is not None:
        if not isinstance(critic, dict) or not isinstance(critic.get("file"), str):
            raise DefectGanError(f"{source}: critic must be an object with a 'file' name, got {critic!r}")
        _int(source, "critic.width", critic.get("width", 16), 1, 1024)
    return config


def check_weights_fit(config: dict[str, Any], shapes: dict[str, tuple[int, ...]], source: Path,
                      weights: Path) -> None:
    """Compare the tensor shapes a config builds with those stored, without allocating the network.

    Args:
        config: A config passed by :func:`check_config`.
        shapes: Name -> shape of every stored tensor (from the safetensors header).
        source: The JSON file, for messages.
        weights: The safetensors file, for messages.

    Raises:
        DefectGanError: A tensor missing, unexpected or of another shape, naming the first one.
    """
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in DefectGanNet(**config).state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = [name for name in sorted(set(expected) & set(shapes)) if expected[name] != shapes[name]]
    if missing or extra or wrong:
        if wrong:
            detail = f"{wrong[0]} is {list(shapes[wrong[0]])} in the weights, {list(expected[wrong[0]])} by the config"
        elif missing:
            detail = f"{len(missing)} tensors the config needs are missing, e.g. {missing[0]}"
        else:
            detail = f"{len(extra)} stored tensors the config does not use, e.g. {extra[0]}"
        raise DefectGanError(f"{weights}: weights do not match {source.name} ({detail}); were the two files "
                             "written together?")
