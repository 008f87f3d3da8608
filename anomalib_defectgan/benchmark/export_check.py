"""Export a trained anomalib model to OpenVINO and check it reproduces PyTorch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def export_and_compare(engine: Any, model: Any, image_paths: Sequence[str], export_root: str | Path,
                       compression: str | None = None, max_images: int = 32) -> dict[str, Any]:
    """Export ``model`` with ``engine.export`` and compare OpenVINOInferencer with eager PyTorch.

    Args:
        engine: The anomalib Engine that trained ``model``.
        model: A trained AnomalibModule.
        image_paths: Images to compare on (e.g. the test split).
        export_root: Where ``weights/openvino/model.xml`` goes.
        compression: None (FP32), ``fp16`` or ``int8`` (NNCF weight compression).
        max_images: Compare on at most this many images.

    Returns:
        ``xml`` path, ``max_abs_score_diff``, ``label_agreement`` and ``images`` compared.
    """
    from anomalib.data.utils import read_image
    from anomalib.deploy import CompressionType, ExportType, OpenVINOInferencer

    kind = None if compression is None else CompressionType(compression.lower())
    xml = engine.export(model=model, export_type=ExportType.OPENVINO, export_root=str(export_root),
                        compression_type=kind, onnx_kwargs={"opset_version": 18})
    from anomalib_defectgan.utils.openvino_precision import F32_CONFIG

    inferencer = OpenVINOInferencer(path=xml, device="CPU", config=dict(F32_CONFIG))
    model.eval()
    diffs, agree = [], []
    for path in list(image_paths)[:max_images]:
        image = read_image(path, as_tensor=True)
        with torch.no_grad():
            eager = model(image.unsqueeze(0))
        ov = inferencer.predict(image)
        diffs.append(abs(float(np.asarray(ov.pred_score).ravel()[0]) - float(eager.pred_score.ravel()[0])))
        agree.append(bool(np.asarray(ov.pred_label).ravel()[0]) == bool(eager.pred_label.ravel()[0]))
    return {"xml": str(xml), "compression": compression or "fp32", "images": len(diffs),
            "max_abs_score_diff": float(max(diffs)), "label_agreement": float(np.mean(agree))}
