"""``defectgan demo``: the product's promise, end to end, on the procedural steel world.

1. render the steel world (several grades; one grade is new: its defects are for testing only);
2. train the defect-transfer GAN on the other grades' defects for the profile's iteration budget
   (a time cap only guards against a stalled machine; the report says if it cut the GAN short);
3. paint defects onto the new grade's good images (``defectgan generate``);
4. train DefectClassifier through anomalib's Engine five times (no synthetic defects, Perlin,
   CutPaste, NSA-style Poisson paste, DefectGAN) and test each on the new grade's real defects;
5. export the best arm (highest AUROC, ties AP) to OpenVINO and check it against PyTorch;
6. write ``report.md``, ``report.json`` and PNG figures.

The test split is small at demo sizes; the report says how little its differences mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from anomalib_defectgan.benchmark.classifier_run import ClassifierSettings
from anomalib_defectgan.benchmark.export_check import export_and_compare
from anomalib_defectgan.benchmark.figures import error_bars, roc_figure, sample_grid
from anomalib_defectgan.benchmark.new_grade import prepare_dataset, run_benchmark
from anomalib_defectgan.benchmark.new_grade_protocol import new_grade_split
from anomalib_defectgan.benchmark.results_table import best_arm, json_safe, summarize
from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.progress import StageClock

NEW_GRADE = "pickled"
ARMS = ["none", "perlin", "cutpaste", "nsa", "defectgan"]

PROFILES: dict[str, dict[str, Any]] = {
    # Test-sized: a few minutes on 2 CPU cores. Numbers mean nothing at this size.
    "smoke": {"size": 64, "per_class": 2, "good_per_grade": 8, "gan_config": "tiny.yaml", "gan_steps": 20,
              "image_size": 64, "steps": 6, "batch_size": 8, "seeds": [0], "samples": 4},
    # <= 15 minutes on 2 CPU cores: GAN 900 iterations (cpu.yaml, matched composite; capped at
    # 12 min), then 5 classifiers x 80 steps at 96 px (9 min 54 s alone, docs/benchmarks.md).
    "quick": {"size": 128, "per_class": 10, "good_per_grade": 30, "gan_config": "cpu.yaml", "gan_steps": 900,
              "gan_max_time": "00:00:12:00", "image_size": 96, "steps": 80, "batch_size": 16, "seeds": [0],
              "samples": 8},
    # Sized for one GPU: the GAN gets 2 hours (steel_128.yaml would need about 6 GPU-hours for its
    # 375k iterations), then 12 classifier runs. Not run yet (no GPU in this project so far).
    "full": {"size": 256, "per_class": 40, "good_per_grade": 120, "gan_config": "steel_128.yaml", "gan_steps": None,
             "gan_max_time": "00:02:00:00", "image_size": 256, "steps": 3000, "batch_size": 32, "seeds": [0, 1, 2],
             "samples": 12},
}


def _generate_samples(out: Path, data: Path, generator_dir: Path, donors: Path, count: int, seed: int) -> list[dict]:
    from anomalib_defectgan.commands.generate import generate_dataset

    normal_dir = data.parent / NEW_GRADE / "train" / "good"
    written = generate_dataset(normal_dir, donors, count, out / "generated", checkpoint=generator_dir,
                               generator="defectgan", seed=seed, grade=NEW_GRADE, overwrite=True)
    frame = read_manifest(written.manifest)
    defects = frame[frame["label"] == "defect"]
    return [{"donor": row.get("donor_path", ""), "canvas": row.get("normal_path", ""), "output": row["image_path"],
             "mask": row["mask_path"]} for _, row in defects.iterrows()]



def run_demo(out: Path, profile: str) -> dict[str, Any]:
    """Run the demo; return the report dictionary (also written to ``out/report.json``)."""
    settings_of = PROFILES[profile]
    stages = StageClock(6)
    out.mkdir(parents=True, exist_ok=True)
    print(stages.line("1", f"procedural steel world -> {out / 'data'}"), flush=True)
    data = prepare_dataset("steel-world", out, None, None, settings_of["size"], settings_of["per_class"],
                           settings_of["good_per_grade"], seed=0)
    settings = ClassifierSettings(image_size=settings_of["image_size"], max_steps=settings_of["steps"],
                                  batch_size=settings_of["batch_size"])
    budget = f"{settings_of['gan_steps']} iterations" if settings_of["gan_steps"] else "the config's max_steps"
    print(stages.line("2+4", f"GAN (budget {budget}, time cap {settings_of.get('gan_max_time') or 'none'}), then "
                             f"DefectClassifier x {len(ARMS)} arms ({', '.join(ARMS)})"), flush=True)
    frame = read_manifest(data)
    results = run_benchmark(new_grade_split(frame, NEW_GRADE), NEW_GRADE, out / "benchmark", ARMS,
                            settings_of["seeds"], settings, f"defect_gan/{settings_of['gan_config']}",
                            settings_of["gan_steps"], frame=frame, resume=False,
                            gan_max_time=settings_of.get("gan_max_time"))
    arm_results = results.pop("arm_results")
    table = results.pop("report_body")
    generator_dir = Path(results["generator_dir"])
    print(stages.line("3", "synthetic defects on the new grade (defectgan generate)"), flush=True)
    samples = _generate_samples(out, data, generator_dir, out / "benchmark" / "donors" / "manifest.csv",
                                settings_of["samples"], seed=0)
    summary = summarize(pd.read_csv(out / "benchmark" / "runs.csv"))
    figures = {
        "samples": str(sample_grid(samples, out / "figures" / "samples.png")),
        "roc": str(roc_figure({arm: (r.labels, r.scores) for arm, r in arm_results.items()}, out / "figures" / "roc.png")),
        "errors": str(error_bars(summary, out / "figures" / "errors.png")),
    }
    best = best_arm(summary, ARMS)
    print(stages.line("5", f"export the best arm ({best}) to OpenVINO and compare with PyTorch"), flush=True)
    chosen = arm_results[best]
    parity = export_and_compare(chosen.engine, chosen.model, chosen.image_paths, out / "export")
    report = {"profile": profile, "new_grade": NEW_GRADE, "best_arm": best, "gan_iterations": results["gan_iterations"],
              "gan_budget": results["gan_budget"], "warnings": results["warnings"], "openvino": parity,
              "figures": figures, "benchmark": results, "seconds": stages.elapsed()}
    atomic_write_text(out / "report.json", json.dumps(json_safe(report), indent=2))
    atomic_write_text(out / "report.md", "\n".join([
        f"# defectgan demo ({profile})", "",
        f"Grade `{NEW_GRADE}` is new: DefectClassifier never sees its real defects in training and is tested on them.",
        "", table, "",
        (f"Best arm (highest AUROC, ties AP): **{best}**. OpenVINO FP32 vs PyTorch on {parity['images']} test "
         f"images: max |score difference| {parity['max_abs_score_diff']:.2e}, label agreement "
         f"{parity['label_agreement']:.1%}."), "",
        "![samples](figures/samples.png) ![roc](figures/roc.png) ![errors](figures/errors.png)", "",
        f"Total time: {report['seconds'] / 60:.1f} min.",
    ]) + "\n")
    print(stages.line("6", f"report: {out / 'report.md'}"), flush=True)
    return report


def main(argv: list[str]) -> int:
    """Entry point of ``defectgan demo``."""
    parser = argparse.ArgumentParser(prog="defectgan demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--profile", default="quick", choices=list(PROFILES),
                        help="smoke: minutes, checks the pipeline; quick: <= 15 min on 2 CPU cores; full: sized for a GPU")
    args = parser.parse_args(argv)
    run_demo(Path(args.out), args.profile)
    return 0
