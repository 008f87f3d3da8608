"""The one OpenVINO compile setting that keeps FP32 inference FP32.

On CPUs with AMX or AVX512-BF16 (Sapphire Rapids and later) OpenVINO's CPU plugin computes an
FP32 or FP16 IR in bf16 by default. That moves scores by ~1e-3 from PyTorch, enough to flip a
label at the threshold and to fail any parity check. Every OpenVINO model this package compiles
(the GAN's transfer graph, the classifier's parity check and latency benchmark) passes
``F32_CONFIG``; a plant that wants bf16's speed can leave it out and re-check its labels.
"""

from __future__ import annotations

from typing import Any

F32_CONFIG: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}


def compile_config(threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """``F32_CONFIG`` plus ``INFERENCE_NUM_THREADS`` (when given) and any other properties."""
    config = {**F32_CONFIG, **extra}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config
