"""``defectgan benchmark new-grade``: does a generator help a grade that has no real defects yet?

For each seed and arm (``none``, ``perlin``, ``cutpaste``, ``defectgan``; see
:mod:`~anomalib_defectgan.benchmark.new_grade_protocol`) a DefectClassifier is trained through
anomalib's Engine and tested on the new grade's REAL defects. The GAN is trained once per
benchmark (not per seed) on the other grades' defects and every grade's good images. Results:
``runs.csv`` (one row per arm and seed), ``results.md`` / ``results.json`` (mean +- std and the
relative error reduction of DefectGAN vs ``none`` and vs the best of Perlin / CutPaste).

Datasets: ``steel-world`` (rendered here), ``aitex`` (leave-one-fabric-out, imported from
``--root``), or ``manifest`` (your own: ``--manifest M --new-grade G``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from anomalib_defectgan.benchmark.classifier_run import ArmResult, ClassifierSettings, train_and_test
from anomalib_defectgan.benchmark.new_grade_protocol import ARMS, NewGradeSplit, arm_manifest, new_grade_split
from anomalib_defectgan.benchmark.results_table import format_table, reductions, summarize
from anomalib_defectgan.data.manifest import read_manifest, write_manifest
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.atomic import atomic_write_text

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_NEW_GRADE = {"steel-world": "pickled", "aitex": "fabric_03"}


def prepare_dataset(kind: str, out: Path, root: str | None, manifest: str | None, size: int, per_class: int,
                    good_per_grade: int, seed: int) -> Path:
    """Return the manifest of the dataset the benchmark runs on (rendering or importing it first)."""
    if kind == "manifest":
        if not manifest:
            raise DefectGanError("--dataset manifest needs --manifest PATH")
        return Path(manifest)
    target = out / "data"
    if (target / "manifest.csv").is_file():
        return target / "manifest.csv"
    if kind == "steel-world":
        from anomalib_defectgan.data.synthetic_steel import make_synthetic_steel

        make_synthetic_steel(target, size=size, per_class=per_class, good_per_grade=good_per_grade, seed=seed)
    elif kind == "aitex":
        from anomalib_defectgan.data.datasets import aitex

        source = Path(root or Path(__file__).resolve().parents[3] / "shared" / "datasets" / "aitex")
        if not source.is_dir():
            raise DefectGanError(f"AITEX not found at {source}; pass --root")
        aitex.to_manifest(source, target)
    else:
        raise DefectGanError(f"unknown dataset {kind!r}; known: steel-world, aitex, manifest")
    return target / "manifest.csv"


def gan_manifest(frame: pd.DataFrame, split: NewGradeSplit) -> pd.DataFrame:
    """What the GAN may see: the donors and every grade's good training images (never a test row)."""
    held_out = set(split.test["image_path"]) | set(split.val["image_path"])
    goods = frame[(frame["label"] == "good") & ~frame["image_path"].isin(held_out) & (frame["split"] != "test")]
    return pd.concat([split.donors, goods]).assign(split="train").drop_duplicates("image_path")


def fit_gan(manifest: Path, config: str, out: Path, max_steps: int | None, extra: list[str]) -> Path:
    """Train the GAN with ``defectgan fit`` in a subprocess; return the exported generator folder."""
    existing = sorted(out.glob("**/generator/generator.json"))
    if existing:
        return existing[-1].parent
    command = [sys.executable, "-m", "anomalib_defectgan.cli", "fit", "-c", config,
               "--data.init_args.manifest", str(manifest), "--trainer.default_root_dir", str(out), *extra]
    if max_steps is not None:
        command += ["--trainer.max_steps", str(max_steps)]
    print("training the GAN:", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    found = sorted(out.glob("**/generator/generator.json"))
    if not found:
        raise DefectGanError(f"GAN training in {out} wrote no generator/generator.json")
    return found[-1].parent


def make_generator(arm: str, donors: Path, generator_dir: Path | None, seed: int) -> Any:
    """The synthetic-defect generator of an arm (``None`` for the real-data-only arm)."""
    if arm == "none":
        return None
    if arm == "perlin":
        from anomalib.data.utils.generators import PerlinAnomalyGenerator

        return PerlinAnomalyGenerator(probability=1.0)
    if arm == "cutpaste":
        from anomalib_defectgan.generators import CutPasteGenerator

        return CutPasteGenerator(donors, probability=1.0, seed=seed)
    from anomalib_defectgan.generators import DefectTransferGenerator

    return DefectTransferGenerator(generator_dir, donors, probability=1.0, seed=seed)


def run_benchmark(manifest: Path, new_grade: str, out: Path, arms: list[str], seeds: list[int],
                  settings: ClassifierSettings, gan_config: str, gan_steps: int | None,
                  generator_dir: Path | None = None, donor_shots: int | None = None,
                  gan_args: list[str] | None = None) -> dict[str, Any]:
    """Run every arm for every seed; write runs.csv, results.md and results.json under ``out``.

    Returns:
        The results dictionary written to ``results.json`` (plus ``arm_results``, the last seed's
        :class:`ArmResult` per arm, not serialised).
    """
    out.mkdir(parents=True, exist_ok=True)
    frame = read_manifest(manifest)
    split = new_grade_split(frame, new_grade, donor_shots=donor_shots, seed=seeds[0])
    donors = write_manifest(split.donors, out / "donors" / "manifest.csv")
    if "defectgan" in arms and generator_dir is None:
        gan_data = write_manifest(gan_manifest(frame, split), out / "gan_data" / "manifest.csv")
        started = time.perf_counter()
        generator_dir = fit_gan(gan_data, gan_config, out / "gan", gan_steps, gan_args or [])
        print(f"GAN ready in {time.perf_counter() - started:.0f} s: {generator_dir}", flush=True)
    rows, last = [], {}
    for seed in seeds:
        for arm in arms:
            arm_dir = out / "runs" / f"{arm}_seed{seed}"
            path = write_manifest(arm_manifest(split, arm), arm_dir / "manifest.csv")
            started = time.perf_counter()
            result: ArmResult = train_and_test(path, make_generator(arm, donors, generator_dir, seed), settings, seed,
                                               arm_dir / "anomalib", name=f"{new_grade}_{arm}")
            rows.append({"arm": arm, "seed": seed, **result.metrics, "seconds": time.perf_counter() - started})
            print(f"[{arm} seed {seed}] " + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()), flush=True)
            last[arm] = result
    runs = pd.DataFrame(rows)
    runs.to_csv(out / "runs.csv", index=False)
    summary = summarize(runs)
    found = reductions(summary, "defectgan", "none", ["perlin", "cutpaste"]) if {"defectgan", "none"} <= set(arms) else {}
    table = format_table(summary)
    results = {
        "new_grade": new_grade,
        "manifest": str(manifest),
        "seeds": seeds,
        "settings": asdict(settings),
        "generator_dir": str(generator_dir) if generator_dir else None,
        "test_images": int(len(split.test)),
        "test_defects": int((split.test["label"] == "defect").sum()),
        "donors": int(len(split.donors)),
        "summary": {arm: {m: summary.loc[arm, (m, "mean")] for m in ("error", "auroc", "ap", "pixel_auroc")}
                    for arm in summary.index},
        "relative_error_reduction": found,
    }
    lines = [f"# New-grade benchmark: {new_grade}", "", f"Manifest `{manifest}`; seeds {seeds}; "
             f"{results['test_images']} test images ({results['test_defects']} real defects); "
             f"{results['donors']} donor defects from other grades.", "", table, ""]
    if found:
        lines.append(f"Relative error reduction of DefectGAN: vs none {found['vs_none']:+.1%}, vs best baseline "
                     f"({found['best_baseline']}) {found['vs_best_baseline']:+.1%}.")
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "results.json", json.dumps(_finite_or_null(results), indent=2))
    print("\n".join(lines), flush=True)
    results["arm_results"] = last
    return results


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark new-grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="steel-world", choices=["steel-world", "aitex", "manifest"])
    parser.add_argument("--manifest", help="your manifest (with --dataset manifest)")
    parser.add_argument("--root", help="source folder of an imported dataset (aitex)")
    parser.add_argument("--new-grade", help="grade treated as new (default: pickled / fabric_03)")
    parser.add_argument("--out", default="results/benchmark_new_grade")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--donor-shots", type=int, help="at most this many real donor defects per class")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--synthetic-ratio", type=float, default=0.5)
    parser.add_argument("--generator", help="a trained generator folder (skips GAN training)")
    parser.add_argument("--gan-config", default=str(REPO_CONFIGS / "defect_gan" / "cpu.yaml"))
    parser.add_argument("--gan-steps", type=int, help="override the GAN config's max_steps")
    parser.add_argument("--size", type=int, default=128, help="steel-world image size")
    parser.add_argument("--per-class", type=int, default=12, help="steel-world defects per class and grade")
    parser.add_argument("--good-per-grade", type=int, default=40, help="steel-world good images per grade")
    parser.add_argument("--data-seed", type=int, default=0)
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``defectgan benchmark new-grade``."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    manifest = prepare_dataset(args.dataset, out, args.root, args.manifest, args.size, args.per_class,
                               args.good_per_grade, args.data_seed)
    new_grade = args.new_grade or DEFAULT_NEW_GRADE.get(args.dataset)
    if not new_grade:
        raise DefectGanError("--new-grade is required with --dataset manifest")
    settings = ClassifierSettings(backbone=args.backbone, image_size=args.image_size, max_epochs=args.epochs,
                                  batch_size=args.batch_size, synthetic_ratio=args.synthetic_ratio)
    run_benchmark(manifest, new_grade, out, args.arms, args.seeds, settings, args.gan_config, args.gan_steps,
                  Path(args.generator) if args.generator else None, args.donor_shots)
    return 0
