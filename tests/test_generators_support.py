"""Tiny on-disk fixtures for the generator tests: a defect bank and a folder of good images.

Imported by ``tests/test_generators*.py`` and ``tests/test_generate_cli.py``; holds no tests.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anomalib_defectgan.data.image_io import write_image


def texture(rng: np.random.Generator, size: int, level: float) -> np.ndarray:
    """A grey steel-like texture: a level, horizontal streaks and grain, uint8 ``[size, size]``."""
    streaks = rng.normal(0, 8, (size, 1)) * np.ones((1, size))
    grain = rng.normal(0, 4, (size, size))
    return np.clip(level + streaks + grain, 0, 255).astype(np.uint8)


def make_bank(root: Path, size: int = 48, per_class: int = 3, seed: int = 0) -> Path:
    """Write ``root/<class>/*.png`` + ``root/<class>/masks/<stem>_mask.png`` for classes scratch and spot."""
    rng = np.random.default_rng(seed)
    for defect_class in ("scratch", "spot"):
        for i in range(per_class):
            image = texture(rng, size, 140.0)
            mask = np.zeros((size, size), np.uint8)
            if defect_class == "scratch":
                y = int(rng.integers(8, size - 8))
                cv2.line(mask, (4, y), (size - 5, y + int(rng.integers(-4, 5))), 255, 2)
                image[mask > 0] = 40
            else:
                cy, cx = (int(v) for v in rng.integers(12, size - 12, 2))
                cv2.circle(mask, (cx, cy), int(rng.integers(3, 7)), 255, -1)
                image[mask > 0] = 230
            write_image(root / defect_class / f"{defect_class}_{i}.png", image)
            write_image(root / defect_class / "masks" / f"{defect_class}_{i}_mask.png", mask)
    return root


def make_normals(root: Path, count: int = 4, size: int = 48, seed: int = 1, level: float = 90.0) -> Path:
    """Write ``count`` good grey images ``root/good_<i>.png``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        write_image(root / f"good_{i}.png", texture(rng, size, level))
    return root


def make_tiny_generator(root: Path, classes: tuple[str, ...] = ("scratch", "spot"), channels: int = 1,
                        crop_size: int = 32, seed: int = 0, defect_path: str = "code", critic: bool = False,
                        composite_mode: str = "paste", change_region: str = "halo", change_bias: float = 0.0) -> Path:
    """Save an untrained tiny DefectGAN generator with the GAN's own export code; returns its folder.

    The mask bias is positive so that the untrained network paints visible masks. An untrained
    ``defect_path="composite"`` generator returns the pasted donor defect unchanged. ``critic``
    saves an untrained versatile classifier V beside it; ``composite_mode`` and ``change_region`` those
    of a composite one; ``change_bias`` fills G's output biases so that a composite one brightens
    every pixel it may change.
    """
    import inspect

    import torch

    from anomalib_defectgan.models.defect_gan import DefectGanNet
    from anomalib_defectgan.models.defect_gan.inference import save_generator

    torch.manual_seed(seed)
    config = {"channels": channels, "num_classes": len(classes) + 1, "num_grades": 1, "base_channels": 8,
              "max_channels": 16, "mask_bias": 1.0}
    if defect_path != "code":
        config["defect_path"] = defect_path
    if composite_mode != "paste":
        config["composite_mode"] = composite_mode
    if change_region != "halo":
        config["change_region"] = change_region
    if "canvas_skip" in inspect.signature(DefectGanNet).parameters:
        config["canvas_skip"] = True  # exercises aten::logit, which the OpenVINO export has to convert
    from anomalib_defectgan.models.defect_gan.critic import VersatileClassifier

    v = VersatileClassifier(channels, len(classes) + 1, 1, width=4) if critic else None
    net = DefectGanNet(**config)
    if change_bias:
        with torch.no_grad():
            for layer in net.generator.to_rgb:
                layer.bias.fill_(change_bias)
    save_generator(net, config, ["good", *classes], ["known"], crop_size, root, critic=v,
                   critic_width=4)
    return root
