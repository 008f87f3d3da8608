"""``defectgan benchmark new-grade``: does a generator help a grade that has no real defects yet?

For each seed and arm (``none``, ``perlin``, ``cutpaste``, ``nsa``, ``defectgan``; see
:mod:`~anomalib_defectgan.benchmark.new_grade_protocol`) a DefectClassifier is trained through
anomalib's Engine and tested on the new grade's REAL defects. The GAN is trained once per
benchmark (not per seed) on the other grades' defects and every grade's good images, for an
iteration budget (``--gan-steps``) under a safety time cap (``--gan-max-time``); with
``--gan-seeds`` one GAN is trained per seed and the report adds the spread between GAN trainings
(two trainings of one config can differ as much as two configs do). Results:
``runs.csv`` (one row per arm and seed), ``results.md`` / ``results.json``: mean +- std per arm;
DefectGAN minus the best baseline (Perlin / CutPaste / NSA with the highest mean AUROC, ties AP)
seed by seed; the relative error reduction vs ``none`` and vs that baseline; the GAN iterations
that ran; and warnings when the test split is too small to trust or the time cap cut the GAN short.

Datasets: ``steel-world`` (rendered here), ``aitex`` (leave-one-fabric-out, imported from
``--root``), ``sd-saliency`` (real steel, few-shot patch protocol:
:mod:`~anomalib_defectgan.benchmark.few_shot_patches`), or ``manifest`` (your own:
``--manifest M --new-grade G``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anomalib_defectgan.benchmark.classifier_run import ArmResult, ClassifierSettings, train_and_test
from anomalib_defectgan.benchmark.new_grade_protocol import (
    ARMS,
    MIN_TEST_IMAGES,
    NewGradeSplit,
    arm_manifest,
    new_grade_split,
)
from anomalib_defectgan.benchmark.results_table import (
    BASELINES,
    class_aurocs,
    format_class_table,
    format_gan_spread,
    format_paired,
    format_table,
    gan_training_spread,
    json_safe,
    paired_differences,
    reductions,
    small_test_warning,
    summarize,
)
from anomalib_defectgan.data.blending import CHANGE_THRESHOLD
from anomalib_defectgan.data.manifest import read_manifest, write_manifest
from anomalib_defectgan.data.synthetic_steel import HeldOutGrade, good_split_counts, make_synthetic_steel
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.generators.factory import build_generator
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.packaged_configs import resolve_config
from anomalib_defectgan.utils.progress import RunClock
from anomalib_defectgan.utils.transfer_options import add_transfer_options

DEFAULT_NEW_GRADE = {"steel-world": "pickled", "aitex": "fabric_03"}
FEW_SHOT_TEST_PER_CLASS = 100
SHARED_FOLDERS = {"aitex": "aitex", "sd-saliency": "sd-saliency-900"}


def prepare_dataset(kind: str, out: Path, root: str | None, manifest: str | None, size: int, per_class: int,
                    good_per_grade: int, seed: int, held_out: HeldOutGrade | None = None) -> Path:
    """Return the manifest of the dataset the benchmark runs on (rendering or importing it first).

    ``held_out`` (steel world only; :func:`_held_out_grade` refuses it for the others) renders more
    test images of the new grade; a steel world already in ``out/data`` must hold that many, or the
    run stops with an error naming it.
    """
    if kind == "manifest":
        if not manifest:
            raise DefectGanError("--dataset manifest needs --manifest PATH")
        return Path(manifest)
    target = out / "data"
    if (target / "manifest.csv").is_file():
        if held_out is not None:
            _check_held_out_counts(target / "manifest.csv", held_out)
        return target / "manifest.csv"
    if kind == "steel-world":
        make_synthetic_steel(target, size=size, per_class=per_class, good_per_grade=good_per_grade, seed=seed,
                             held_out=held_out)
    elif kind in SHARED_FOLDERS:
        from anomalib_defectgan.data.datasets import aitex, sd_saliency

        source = Path(root) if root else Path("..", "shared", "datasets", SHARED_FOLDERS[kind]).resolve()
        if not source.is_dir():
            raise DefectGanError(f"{kind} not found at {source} (the default is ../shared/datasets/"
                                 f"{SHARED_FOLDERS[kind]} from the working directory); pass --root")
        (aitex if kind == "aitex" else sd_saliency).to_manifest(source, target)
    else:
        raise DefectGanError(f"unknown dataset {kind!r}; known: steel-world, aitex, manifest")
    return target / "manifest.csv"


def _check_held_out_counts(manifest: Path, held_out: HeldOutGrade) -> None:
    """Stop when a steel world already rendered holds other test counts than asked for."""
    rows = read_manifest(manifest)
    rows = rows[rows["grade"] == held_out.grade]
    defects = rows[rows["label"] == "defect"].groupby("defect_class").size()
    goods = int(((rows["label"] == "good") & (rows["split"] == "test")).sum())
    if defects.empty or (defects != held_out.per_class).any() or goods != held_out.goods:
        raise DefectGanError(
            f"{manifest}: grade {held_out.grade!r} holds {defects.to_dict()} defects per class and {goods} good test "
            f"images, not the {held_out.per_class} and {held_out.goods} asked for; choose another --out")


def gan_manifest(frame: pd.DataFrame | None, split: NewGradeSplit) -> pd.DataFrame:
    """What the GAN may see: the donors, the new grade's good training images and the other grades'
    good training images (never a validation or test row)."""
    parts = [split.donors, split.train_goods]
    if frame is not None:
        held_out = set(split.test["image_path"]) | set(split.val["image_path"])
        parts.append(frame[(frame["label"] == "good") & ~frame["image_path"].isin(held_out) & (frame["split"] != "test")])
    return pd.concat(parts).assign(split="train").drop_duplicates("image_path")


@dataclass(frozen=True)
class GanFit:
    """A trained GAN: its generator folder and how many iterations it ran against its budget."""

    generator_dir: Path
    iterations: int | None
    max_steps: int | None
    max_time: str | None

    @property
    def cut_short(self) -> bool:
        """Whether the GAN stopped before its iteration budget (the time cap, when it has one, stopped it)."""
        return None not in (self.iterations, self.max_steps) and 0 < self.iterations < self.max_steps

    @property
    def line(self) -> str:
        """``GAN: N iterations (budget M; time cap T).``"""
        ran = "an unknown number of" if self.iterations is None else str(self.iterations)
        budget = "none" if self.max_steps in (None, -1) else str(self.max_steps)
        return f"GAN: {ran} iterations (budget {budget}; time cap {self.max_time or 'none'})."

    @property
    def warning(self) -> str | None:
        """A warning when :attr:`cut_short`, else None."""
        if not self.cut_short:
            return None
        cause = f"the time cap ({self.max_time}) stopped the GAN" if self.max_time else "the GAN stopped"
        return (f"Warning: {cause} after {self.iterations} of its {self.max_steps} iterations; it is less "
                f"trained than its budget asks for.")


END_CHECKPOINT = Path("final") / "last.ckpt"


def gan_iterations(checkpoint: Path) -> int | None:
    """``global_step`` (iterations) of a Lightning checkpoint, loaded with ``weights_only=True``; None if absent."""
    if not checkpoint.is_file():
        return None
    import torch

    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"])


def _latest_generator(out: Path) -> Path | None:
    found = sorted(out.glob("**/generator/generator.json"), key=lambda path: path.stat().st_mtime)
    return found[-1].parent if found else None


def _gan_fit(out: Path, generator_dir: Path) -> GanFit:
    """What the fit that wrote ``generator_dir`` ran: its saved ``config.yaml`` and end checkpoint."""
    import yaml

    config = generator_dir.parent / "config.yaml"
    trainer = {}
    if config.is_file():
        # BaseLoader keeps every scalar a string: YAML 1.1 would read max_time 10:00:12:00 as a base-60 int.
        trainer = (yaml.load(config.read_text(), Loader=yaml.BaseLoader) or {}).get("trainer", {})
    max_steps, max_time = (None if trainer.get(key) in (None, "", "~", "null") else trainer[key]
                           for key in ("max_steps", "max_time"))
    return GanFit(generator_dir, gan_iterations(out / END_CHECKPOINT), None if max_steps is None else int(max_steps),
                  None if max_time is None else str(max_time))


def fit_gan(manifest: Path, config: str, out: Path, max_steps: int | None, extra: list[str],
            max_time: str | None = None) -> GanFit:
    """Train the GAN with ``defectgan fit`` in a subprocess (or reuse the one already in ``out``).

    Besides the config's own checkpoints, the fit writes ``out/final/last.ckpt`` (weights only) when
    training ends, however it ends, so that its ``global_step`` counts the iterations that ran.

    Args:
        manifest: What the GAN may see.
        config: ``defectgan fit`` config (a file or a shipped name).
        out: The fit's ``default_root_dir``.
        max_steps: Iteration budget (``trainer.max_steps``); None keeps the config's.
        extra: More ``defectgan fit`` arguments.
        max_time: Safety cap on the training time (``trainer.max_time``, ``DD:HH:MM:SS``); None keeps
            the config's.

    Returns:
        The exported generator folder, the iterations run and the budget they ran under.
    """
    existing = _latest_generator(out)
    if existing is None:
        command = [sys.executable, "-m", "anomalib_defectgan.cli", "fit", "-c", str(resolve_config(config)),
                   "--data.init_args.manifest", str(manifest), "--trainer.default_root_dir", str(out), *extra,
                   "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                   "--trainer.callbacks.dirpath", str(out / END_CHECKPOINT.parent),
                   "--trainer.callbacks.save_last", "true", "--trainer.callbacks.save_top_k", "0",
                   "--trainer.callbacks.every_n_epochs", "0", "--trainer.callbacks.save_weights_only", "true"]
        if max_steps is not None:
            command += ["--trainer.max_steps", str(max_steps)]
        if max_time is not None:
            command += ["--trainer.max_time", max_time]
        print("training the GAN:", " ".join(command), flush=True)
        subprocess.run(command, check=True)
        existing = _latest_generator(out)
        if existing is None:
            raise DefectGanError(f"GAN training in {out} wrote no generator/generator.json")
    fit = _gan_fit(out, existing)
    print("\n".join(line for line in (fit.line, fit.warning) if line), flush=True)
    return fit


def _window_warning(donors: Path, generator_dir: Path | None, window: int | None = None) -> str | None:
    """The DefectGAN arm's warning when donors are larger than its GAN's window (None: they fit)."""
    if generator_dir is None:
        return None
    from anomalib_defectgan.generators.defect_bank import DefectBank
    from anomalib_defectgan.generators.defect_transfer import cut_donors_warning
    from anomalib_defectgan.models.defect_gan import load_generator

    return cut_donors_warning(DefectBank(donors), window or load_generator(generator_dir).crop_size)


def run_benchmark(split: NewGradeSplit, title: str, out: Path, arms: list[str], seeds: list[int],
                  settings: ClassifierSettings, gan_config: str, gan_steps: int | None,
                  generator_dir: Path | None = None, frame: pd.DataFrame | None = None,
                  gan_args: list[str] | None = None, resume: bool = True, mask_source: str = "donor",
                  min_change: float = CHANGE_THRESHOLD, critic_redraws: int = 0, window: int | None = None,
                  gan_max_time: str | None = None, change_scale: float = 1.0, max_gain: float | None = None,
                  min_strength: float = 1.0, composite_mode: str | None = None, change_region: str | None = None,
                  gan_seeds: list[int] | None = None, placement: str = "defect") -> dict[str, Any]:
    """Run every arm for every seed; write runs.csv, results.md and results.json under ``out``.

    Args:
        split: The protocol's rows (:func:`new_grade_split` or :func:`few_shot_patch_split`).
        title: What is tested (the new grade's name, or the protocol's).
        out: Output folder.
        arms: Arms to run.
        seeds: Classifier seeds (each GAN is trained once, not per classifier seed).
        settings: Classifier settings.
        gan_config: ``defectgan fit`` config for the ``defectgan`` arm.
        gan_steps: The GAN's iteration budget (None: the config's ``max_steps``).
        generator_dir: A trained generator folder; skips GAN training.
        frame: The whole manifest; its other grades' good images become extra GAN canvases.
        gan_args: Extra ``defectgan fit`` arguments.
        resume: Reuse finished runs (``runs/<arm>_seed<k>/result.json``) instead of training again.
        mask_source: ``DefectTransferGenerator``'s ``mask_source`` (``gan`` or ``donor``).
        min_change: ``DefectTransferGenerator``'s ``min_change``.
        critic_redraws: ``DefectTransferGenerator``'s ``critic_redraws``.
        change_scale: ``DefectTransferGenerator``'s ``change_scale``.
        max_gain: ``DefectTransferGenerator``'s ``max_gain``.
        min_strength: ``DefectTransferGenerator``'s ``min_strength``.
        composite_mode: ``DefectTransferGenerator``'s ``composite_mode`` (None: the GAN's own).
        change_region: ``DefectTransferGenerator``'s ``change_region`` (None: the GAN's own).
        window: ``DefectTransferGenerator``'s ``window`` (None: the GAN's crop size).
        placement: ``DefectTransferGenerator``'s ``placement``.
        gan_max_time: Safety cap on the GAN's training time, ``DD:HH:MM:SS`` (None: the config's).
        gan_seeds: Train one GAN per seed (``seed_everything``; ``out/gan_seed<g>``) and run the
            ``defectgan`` arm with each, so the report shows how much the GAN's own training moves
            the classifier (None: one GAN with the config's seed, in ``out/gan``).

    Returns:
        The results dictionary written to ``results.json``, plus two entries not serialised:
        ``arm_results`` (the last seed's :class:`ArmResult` per arm) and ``report_body`` (the
        Markdown of ``results.md`` without its title).
    """
    if gan_seeds is not None and (generator_dir is not None or not gan_seeds or len(set(gan_seeds)) < len(gan_seeds)):
        raise DefectGanError("--gan-seeds needs distinct seeds and trains the GANs itself (not with --generator)")
    out.mkdir(parents=True, exist_ok=True)
    donors = write_manifest(split.donors, out / "donors" / "manifest.csv")
    gan_keys: list[int | None] = list(gan_seeds) if gan_seeds else [None]
    gans: dict[int | None, GanFit] = {}
    generators: dict[int | None, Path | None] = {None: generator_dir}
    if "defectgan" in arms and generator_dir is None:
        gan_data = write_manifest(gan_manifest(frame, split), out / "gan_data" / "manifest.csv")
        for key in gan_keys:
            started = time.perf_counter()
            seeded = [] if key is None else ["--seed_everything", str(key)]
            gans[key] = fit_gan(gan_data, gan_config, out / ("gan" if key is None else f"gan_seed{key}"), gan_steps,
                                [*(gan_args or []), *seeded], gan_max_time)
            generators[key] = gans[key].generator_dir
            print(f"GAN{'' if key is None else f' (seed {key})'} ready in {time.perf_counter() - started:.0f} s: "
                  f"{generators[key]}", flush=True)
    generator_dir = generators.get(gan_keys[0])
    rows, class_rows, last = [], [], {}
    test_class = {str(Path(path).resolve()): name for path, name in zip(split.test["image_path"],
                                                                          split.test["defect_class"])}
    jobs = [(seed, arm, key) for seed in seeds for arm in arms for key in (gan_keys if arm == "defectgan" else [None])]
    clock = RunClock(len(jobs))
    for seed, arm, gan_seed in jobs:
        arm_generator = generators[gan_seed] if arm == "defectgan" else None
        tag = arm if gan_seed is None else f"{arm}, GAN seed {gan_seed},"
        arm_dir = out / "runs" / (f"{arm}_seed{seed}" if gan_seed is None else f"{arm}_gan{gan_seed}_seed{seed}")
        finished = arm_dir / "result.json"
        run = json_safe({"settings": asdict(settings), "split_sizes": [len(split.train_goods), len(split.val),
                                                                        len(split.test), len(split.donors)],
                         **({"generator_dir": str(arm_generator), "mask_source": mask_source,
                             "min_change": min_change, "critic_redraws": critic_redraws, "placement": placement,
                             **({"window": window} if window else {}),
                             **({"change_scale": change_scale} if change_scale != 1.0 else {}),
                             **({"max_gain": max_gain} if max_gain is not None else {}),
                             **({"min_strength": min_strength} if min_strength != 1.0 else {}),
                             **({"composite_mode": composite_mode} if composite_mode else {}),
                             **({"change_region": change_region} if change_region else {})}
                            if arm == "defectgan" else {})})
        if resume and finished.is_file():
            saved = json.loads(finished.read_text())
            if saved.get("run") != run:
                raise DefectGanError(f"{finished}: a finished run made with other settings (or by an older "
                                     f"version); use another --out, or delete it to run again")
            metrics = {k: float("nan") if v is None else v for k, v in saved["metrics"].items()}
            result = ArmResult(metrics, np.array(saved["labels"]), np.array(saved["scores"]),
                               np.array(saved["predicted"]), saved["image_paths"], saved.get("threshold"))
            seconds = saved["seconds"]
            print(f"[{tag} seed {seed}] already done ({finished})", flush=True)
            clock.skipped()
        else:
            print(f"[{tag} seed {seed}] {clock.starting()}", flush=True)
            path = write_manifest(arm_manifest(split, arm), arm_dir / "manifest.csv")
            started = time.perf_counter()
            generator = None if arm == "none" else build_generator(
                arm, donors, arm_generator, seed=seed,
                transfer={"mask_source": mask_source, "min_change": min_change, "critic_redraws": critic_redraws,
                          "window": window, "change_scale": change_scale, "max_gain": max_gain,
                          "min_strength": min_strength,
                          "composite_mode": composite_mode, "change_region": change_region,
                          "placement": placement})
            result = train_and_test(path, generator, settings, seed, arm_dir / "anomalib", name=f"{title}_{arm}")
            seconds = time.perf_counter() - started
            clock.finished(seconds)
            atomic_write_text(finished, json.dumps(json_safe({
                "metrics": result.metrics, "labels": result.labels.tolist(), "scores": result.scores.tolist(),
                "predicted": result.predicted.tolist(), "image_paths": result.image_paths,
                "threshold": result.threshold, "seconds": seconds, "run": run})))
        rows.append({"arm": arm, "seed": seed, "gan_seed": gan_seed, **result.metrics, "seconds": seconds})
        classes = [test_class.get(str(Path(path).resolve()), "?") for path in result.image_paths]
        class_rows.append({"arm": arm, "seed": seed, **class_aurocs(result.labels, result.scores, classes)})
        print(f"[{tag} seed {seed}] " + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
              + f" ({seconds:.0f} s; {clock.left()})", flush=True)
        last[arm] = result
    runs = pd.DataFrame(rows)
    runs.to_csv(out / "runs.csv", index=False)
    summary = summarize(runs)
    found = reductions(summary, "defectgan", "none", BASELINES) if {"defectgan", "none"} <= set(arms) else {}
    paired = paired_differences(runs, "defectgan", BASELINES)
    spread = gan_training_spread(runs, "defectgan")
    per_class = pd.DataFrame(class_rows)
    class_counts = split.test.loc[split.test["label"] == "defect", "defect_class"].value_counts().to_dict()
    test_goods = int((split.test["label"] == "good").sum())
    test_defects = int((split.test["label"] == "defect").sum())
    def which(key: int | None) -> str:
        return "" if key is None else f"GAN seed {key}: "

    gan = gans.get(gan_keys[0])
    warnings = [line for line in (small_test_warning(test_goods, test_defects, MIN_TEST_IMAGES),
                                  *(which(key) + fit.warning for key, fit in gans.items() if fit.warning),
                                  _window_warning(donors, generator_dir, window)) if line]
    results = {
        "tested_on": title,
        "seeds": seeds,
        "settings": asdict(settings),
        "generator_dir": str(generator_dir) if generator_dir else None,
        "mask_source": mask_source,
        "min_change": min_change,
        "critic_redraws": critic_redraws,
        "change_scale": change_scale,
        "max_gain": max_gain,
        "min_strength": min_strength,
        "composite_mode": composite_mode,
        "change_region": change_region,
        "window": window,
        "placement": placement,
        "test_images": len(split.test),
        "test_goods": test_goods,
        "test_defects": test_defects,
        "donors": len(split.donors),
        "gan_iterations": gan.iterations if gan else None,  # the first GAN's; every GAN's in gan_trainings
        "gan_budget": {"max_steps": gan.max_steps, "max_time": gan.max_time} if gan else None,
        "gan_trainings": [{"gan_seed": key, "generator_dir": str(fit.generator_dir), "iterations": fit.iterations}
                          for key, fit in gans.items()],
        "gan_training_spread": spread,
        "warnings": warnings,
        "summary": {arm: {m: summary.loc[arm, (m, "mean")] for m in ("error", "auroc", "ap", "pixel_auroc")}
                    for arm in summary.index},
        "relative_error_reduction": found,
        "paired_vs_best_baseline": paired,
        "class_auroc": {arm: {name: float(group[name].mean()) for name in per_class.columns
                              if name not in ("arm", "seed")} for arm, group in per_class.groupby("arm", sort=False)},
    }
    sizes = (f"Seeds {seeds}; {len(split.test)} test images ({test_goods} good, {test_defects} real defects); "
             f"{len(split.donors)} real donor defects.")
    lines = [f"# New-grade benchmark: {title}", ""]
    for line in [sizes, *(which(key) + fit.line for key, fit in gans.items()), *warnings]:
        lines += [line, ""]
    lines += [format_table(summary), ""]
    if spread:
        lines += [format_gan_spread(spread), ""]
    if paired:
        lines += [format_paired(paired), ""]
    if len(class_counts) > 1:
        lines += [format_class_table(per_class, class_counts, test_goods, MIN_TEST_IMAGES), ""]
    if found:
        lines.append(f"Relative error reduction of DefectGAN: vs none {found['vs_none']:+.1%}, vs best baseline "
                     f"({found['best_baseline']}) {found['vs_best_baseline']:+.1%}.")
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "results.json", json.dumps(json_safe(results), indent=2))
    print("\n".join(lines), flush=True)
    results["arm_results"] = last
    results["report_body"] = "\n".join(lines[2:])  # results.md without its title, for reports that embed it
    return results



def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark new-grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="steel-world", choices=["steel-world", "aitex", "sd-saliency", "manifest"])
    parser.add_argument("--protocol", choices=["new-grade", "few-shot"],
                        help="new-grade (default; few-shot for sd-saliency): see the module docs")
    parser.add_argument("--patch", type=int, default=128, help="few-shot: patch size")
    parser.add_argument("--test-per-class", type=int,
                        help="test defect images per class: few-shot, images held out per class (default 100); "
                             "steel world, defects per class rendered on the new grade, all of them test images "
                             "(default: --per-class; the other grades, so donors and GAN training, stay unchanged)")
    parser.add_argument("--shots", type=int, default=10, help="few-shot: real defect images per class for training")
    parser.add_argument("--manifest", help="your manifest (with --dataset manifest)")
    parser.add_argument("--root", help="source folder of an imported dataset (aitex)")
    parser.add_argument("--new-grade", help="grade treated as new (default: pickled / fabric_03)")
    parser.add_argument("--out", default="results/benchmark_new_grade")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--donor-shots", type=int, help="at most this many real donor defects per class")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="classifier optimizer steps (same for every arm)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--synthetic-ratio", type=float, default=0.5)
    parser.add_argument("--generator", help="a trained generator folder (skips GAN training)")
    add_transfer_options(parser, "defectgan arm", strength=True, composite=True)
    parser.add_argument("--gan-config", default="defect_gan/cpu.yaml",
                        help="defectgan fit config: a file, or a shipped name (default: %(default)s)")
    parser.add_argument("--gan-steps", type=int,
                        help="the GAN's iteration budget, its trainer.max_steps (default: the config's)")
    parser.add_argument("--gan-seeds", nargs="+", type=int,
                        help="train one GAN per seed (its seed_everything) and run the defectgan arm with each: "
                             "the report shows the spread between GAN trainings (default: one GAN, the config's seed)")
    parser.add_argument("--gan-max-time",
                        help="safety cap on the GAN's training time, DD:HH:MM:SS (default: the config's "
                             "max_time); results.md warns when it stopped the GAN before --gan-steps")
    parser.add_argument("--min-test-goods", type=int, default=MIN_TEST_IMAGES,
                        help="move good images from training to test until the test split holds this many "
                             "(at most half of the new grade's good images; default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="steel-world image size")
    parser.add_argument("--per-class", type=int, default=17,
                        help="steel-world defects per class and grade (17: 102 real test defects)")
    parser.add_argument("--good-per-grade", type=int, default=500,
                        help="steel-world good images per grade (a fifth are test images)")
    parser.add_argument("--test-goods", type=int,
                        help="steel world: good test images of the new grade (default: a fifth of --good-per-grade); "
                             "its training images are unchanged")
    parser.add_argument("--data-seed", type=int, default=0)
    return parser


def _held_out_grade(args: argparse.Namespace) -> HeldOutGrade | None:
    """The new grade's extra test renderings asked for on the command line (None: none)."""
    if args.dataset != "steel-world":
        few_shot = _protocol(args) == "few-shot"
        if args.test_goods is not None or (args.test_per_class is not None and not few_shot):
            option = "--test-goods" if args.test_goods is not None else "--test-per-class"
            raise DefectGanError(f"{option} renders steel-world images; {args.dataset} cannot render more"
                                 + ("" if few_shot else " (--test-per-class is the few-shot held-out count)"))
        return None
    if args.test_per_class is None and args.test_goods is None:
        return None
    grade = args.new_grade or DEFAULT_NEW_GRADE.get(args.dataset, "")
    per_class = args.per_class if args.test_per_class is None else args.test_per_class
    goods = good_split_counts(args.good_per_grade)[1] if args.test_goods is None else args.test_goods
    return HeldOutGrade(grade, per_class, goods)


def _protocol(args: argparse.Namespace) -> str:
    return args.protocol or ("few-shot" if args.dataset == "sd-saliency" else "new-grade")


def main(argv: list[str]) -> int:
    """Entry point of ``defectgan benchmark new-grade``."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    manifest = prepare_dataset(args.dataset, out, args.root, args.manifest, args.size, args.per_class,
                               args.good_per_grade, args.data_seed, _held_out_grade(args))
    frame = read_manifest(manifest)
    protocol = _protocol(args)
    if protocol == "few-shot":
        from anomalib_defectgan.benchmark.few_shot_patches import few_shot_patch_split

        test_per_class = FEW_SHOT_TEST_PER_CLASS if args.test_per_class is None else args.test_per_class
        split = few_shot_patch_split(frame, out / "patches", args.patch, test_per_class, args.shots,
                                     seed=args.data_seed, min_test_goods=args.min_test_goods)
        title, frame = f"few-shot {args.shots} per class", None
    else:
        title = args.new_grade or DEFAULT_NEW_GRADE.get(args.dataset)
        if not title:
            raise DefectGanError("--new-grade is required with --dataset manifest")
        split = new_grade_split(frame, title, donor_shots=args.donor_shots, seed=args.data_seed,
                                min_test_goods=args.min_test_goods)
    if args.window is not None and args.window <= 0:
        raise DefectGanError(f"--window must be a positive number of pixels, got {args.window}")
    settings = ClassifierSettings(backbone=args.backbone, image_size=args.image_size, max_steps=args.steps,
                                  batch_size=args.batch_size, synthetic_ratio=args.synthetic_ratio)
    run_benchmark(split, title, out, args.arms, args.seeds, settings, args.gan_config, args.gan_steps,
                  Path(args.generator) if args.generator else None, frame,
                  gan_max_time=args.gan_max_time,
                  mask_source=args.mask_source, min_change=args.min_change, critic_redraws=args.critic_redraws,
                  window=args.window, change_scale=args.change_scale, max_gain=args.max_gain,
                  min_strength=args.min_strength,
                  composite_mode=args.composite_mode, change_region=args.change_region, gan_seeds=args.gan_seeds,
                  placement=args.placement)
    return 0
