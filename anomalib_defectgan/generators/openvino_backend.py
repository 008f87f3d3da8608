"""The GAN's transfer graph as an OpenVINO model: export to IR and run it.

The exported graph is the generator's ``TransferGraph``: ``(canvas [B, C, c, c], z_d, coarse_mask_logits, s_d,
class_id [B], grade_id [B][, donor, donor_mask]) -> (image, mask)`` with a dynamic batch (the
donor crops and masks for ``defect_path="composite"`` generators, whose paste runs in the graph
too). Donor codes still come from the PyTorch encoder (once, then cached), so only the per-image
work runs in OpenVINO.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.openvino_precision import compile_config

IR_NAME = "transfer.xml"
META_NAME = "transfer.json"


def _example_inputs(gan: Any, batch: int = 2, size: int | None = None) -> tuple[Tensor, ...]:
    """Inputs of the right shapes and dtypes for exporting ``gan.export_module()`` on ``size`` px windows."""
    size = gan.crop_size if size is None else int(size)
    grid = size // gan.net.code_stride
    canvas = torch.rand(batch, gan.channels, size, size)
    with torch.no_grad():
        codes = gan.encode(canvas, defect_class=1)
    class_id = torch.ones(batch, dtype=torch.long)
    grade_id = gan.grade_ids(None, batch, torch.device("cpu")).clone()
    assert codes.z_d.shape[-1] == grid
    inputs = (canvas, codes.z_d.cpu(), codes.coarse_mask_logits.cpu(), codes.s_d.cpu(), class_id, grade_id)
    if gan.needs_donor_pixels:
        mask = torch.zeros(batch, 1, size, size)
        mask[..., size // 4:size // 2, size // 4:size // 2] = 1.0
        inputs = (*inputs, torch.rand(batch, gan.channels, size, size), mask)
    return inputs


def _export(graph: torch.nn.Module, example: tuple[Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export`` of the transfer ``graph`` on ``example`` with a dynamic batch.

    Everything but the batch is static: the window side (and so the code grid) is fixed in the
    program, which keeps the residual composite's fill (it recurses on the side) plain Python.
    """
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        return torch.export.export(graph, example, dynamic_shapes=tuple({0: batch} for _ in example), strict=False)


def convert(gan: Any, size: int | None = None) -> Any:
    """Convert a loaded ``DefectGanGenerator``'s transfer graph to an ``openvino.Model`` (dynamic batch).

    The graph goes through ``torch.export`` and OpenVINO's ``ExportedProgram`` frontend, not the
    deprecated ``torch.jit.trace`` that ``openvino.convert_model(module, example_input=...)`` runs.

    Args:
        gan: A loaded ``DefectGanGenerator``.
        size: The window side the model takes (None: the GAN's training crop size).

    Returns:
        The ``openvino.Model``: the inputs of :func:`_example_inputs` with a dynamic batch
        (``[-1, ...]``, the rest static), outputs ``(image, mask)``.
    """
    import openvino as ov

    example = _example_inputs(gan, size=size)
    program = _export(gan.export_module().cpu(), example)
    # The ExportedProgram frontend makes every dimension dynamic: pin all but the batch. (It runs
    # torch's decompositions first, which turn aten.logit into log(x / (1 - x)): no custom rule.)
    shapes = [ov.PartialShape([-1, *tensor.shape[1:]]) for tensor in example]
    return ov.convert_model(program, input=shapes)


def export_openvino(checkpoint: str | Path, out_dir: str | Path, fp16: bool = False) -> Path:
    """Write ``out_dir/transfer.xml`` (+ ``.bin``) and ``out_dir/transfer.json`` for a generator.

    Args:
        checkpoint: Generator folder or file (see ``load_generator``).
        out_dir: Output folder (created).
        fp16: Store weights in FP16 (computation precision is the device's choice).

    Returns:
        Path of the ``.xml`` file.
    """
    import openvino as ov

    from anomalib_defectgan.generators.defect_transfer import _file_hash, _weights_file
    from anomalib_defectgan.models.defect_gan.inference import load_generator

    gan = load_generator(checkpoint)
    model = convert(gan)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / IR_NAME
    # save_model writes .xml and .bin; write to temporary names and rename both, so a crash
    # never leaves a mismatched pair.
    tmp_xml = out_dir / f".{IR_NAME}.tmp.xml"
    ov.save_model(model, str(tmp_xml), compress_to_fp16=fp16)
    tmp_xml.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp_xml.replace(xml)
    meta = {"kind": "defectgan-transfer-openvino", "precision": "FP16" if fp16 else "FP32",
            "checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": _file_hash(_weights_file(checkpoint)),
            "classes": gan.classes, "grades": gan.grades, "channels": gan.channels, "crop_size": gan.crop_size,
            "inputs": gan.export_module().input_names, "outputs": ["image", "mask"]}
    atomic_write_text(out_dir / META_NAME, json.dumps(meta, indent=2) + "\n")
    return xml


class OpenVinoTransfer:
    """Run an exported (or in-memory converted) transfer graph on an OpenVINO device.

    Args:
        model: ``transfer.xml`` path, a folder holding it, or an ``openvino.Model``.
        device: OpenVINO device name.
        threads: ``INFERENCE_NUM_THREADS`` (None: OpenVINO's default).
    """

    def __init__(self, model: str | Path | Any, device: str = "CPU", threads: int | None = None) -> None:
        import openvino as ov

        if isinstance(model, str | Path):
            path = Path(model)
            path = path / IR_NAME if path.is_dir() else path
            if not path.is_file() or not path.with_suffix(".bin").is_file():
                raise DefectGanError(f"{path}: OpenVINO transfer model not found (write it with 'defectgan export')")
            model = str(path)
        self.compiled = ov.Core().compile_model(model, device, compile_config(threads))
        self.request = self.compiled.create_infer_request()

    @classmethod
    def from_generator(cls, gan: Any, device: str = "CPU", threads: int | None = None,
                       size: int | None = None) -> OpenVinoTransfer:
        """Convert ``gan``'s transfer graph in memory for ``size`` px windows (None: its crop size) and compile it."""
        return cls(convert(gan, size), device, threads)

    def __call__(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        """Same inputs and outputs as ``TransferGraph.forward`` (CPU tensors)."""
        if len(tensors) != len(self.compiled.inputs):
            raise DefectGanError(f"the OpenVINO transfer model takes {len(self.compiled.inputs)} inputs, got "
                                 f"{len(tensors)} (a composite-path generator also takes donor and donor_mask)")
        inputs = [np.ascontiguousarray(t.detach().cpu().numpy()) for t in tensors]
        results = self.request.infer(inputs)
        image, mask = (torch.from_numpy(np.array(results[out])) for out in self.compiled.outputs)
        return image, mask
