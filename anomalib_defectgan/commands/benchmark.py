"""``defectgan benchmark NAME ...``: run one benchmark from :mod:`anomalib_defectgan.benchmark`.

A benchmark's ``main(argv)`` lives in ``anomalib_defectgan.benchmark.<module>``, or in
``anomalib_defectgan.commands.<module>`` when the benchmark is a package of its own.
"""

from __future__ import annotations

import importlib

from anomalib_defectgan.errors import DefectGanError

BENCHMARKS = {
    "new-grade": ("new_grade", "Downstream gain on a grade with no real defects (none/Perlin/CutPaste/DefectGAN)."),
    "generator": ("generator", "Synthetic-anomaly generators: img/s vs anomalib's Perlin generator."),
    "classifier": ("classifier", "DefectClassifier: PyTorch eager vs OpenVINO FP32/FP16/INT8 latency."),
    "steel-world": ("steel_world", "Procedural steel world rendering speed (img/s)."),
    "gan": ("gan", "DefectGan training speed (steps/s, time per pair)."),
    "gan-quality": ("commands.gan_quality", "Generated defects judged by an evaluator trained on real crops (no FID)."),
    "transfer-fidelity": ("transfer_fidelity", "Paintings vs the same defect rendered on the new grade (steel world)."),
}


def main(argv: list[str]) -> int:
    """Dispatch ``argv[0]`` to ``anomalib_defectgan.benchmark.<name>.main(argv[1:])``."""
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: defectgan benchmark NAME [options]\n\nbenchmarks:")
        for name, (_, text) in BENCHMARKS.items():
            print(f"  {name:<12} {text}")
        return 0
    if argv[0] not in BENCHMARKS:
        raise DefectGanError(f"unknown benchmark {argv[0]!r}; known: {', '.join(BENCHMARKS)}")
    name = BENCHMARKS[argv[0]][0]
    module = importlib.import_module(f"anomalib_defectgan.{name}" if "." in name else f"anomalib_defectgan.benchmark.{name}")
    return int(module.main(argv[1:]) or 0)
