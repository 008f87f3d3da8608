"""gan-quality report: the Markdown table of a results dictionary."""

from __future__ import annotations

import math
from typing import Any

from anomalib_defectgan.benchmark.gan_quality.sampling import ARMS
from anomalib_defectgan.utils.transfer_options import TRANSFER_OPTIONS


def _cell(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_report(results: dict[str, Any]) -> str:
    """Markdown table of a results dictionary (see :func:`run`)."""
    fd = results["frechet"]

    def frechet(name: str) -> str:
        entry = fd[name]
        ratio = f" (x{_cell(entry['ratio_to_real'], 2)} real)" if "ratio_to_real" in entry else ""
        return f"{_cell(entry['mean'], 2)} +- {_cell(entry['std'], 2)}{ratio}"

    real = results["evaluator"]
    lines = ["| images | n | class acc | grade acc | Frechet to real (V features) | mask IoU | leak |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             (f"| real val crops (ceiling; Frechet: real half vs real half) | {real['val_crops']} | "
              f"{_cell(real['class_accuracy'])} | {_cell(real['grade_accuracy'])} | {frechet('real_vs_real')} "
              "| n/a | n/a |")]
    for arm in ARMS:
        row = results["generated"][arm]
        lines.append(f"| {arm} | {row['samples']} | {_cell(row['class_accuracy'])} | {_cell(row['grade_accuracy'])} | "
                     f"{frechet(arm)} | {_cell(row['mask_iou'])} | {_cell(row['leak'])} |")
    lines += ["", (f"Frechet: mean +- std over {fd['repeats']} random halves of {fd['reference_defects']} real "
                   f"val/test defects ({fd['real_vs_real']['half']} per half; each generator is compared with the "
                   "same halves using as many generated crops).")]
    settings = {name: results[name] for name in TRANSFER_OPTIONS if name in results}
    if settings:
        unset = {"max_gain": "off"}
        painted = ", ".join(f"{name} {unset.get(name, 'as trained') if value is None else value}"
                            for name, value in settings.items())
        lines.append(f"defectgan painted with: {painted}.")
    return "\n".join(lines)


