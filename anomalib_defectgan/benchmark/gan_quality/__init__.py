"""``defectgan benchmark gan-quality``: judge generated defects with an independent evaluator.

No ImageNet weights can be downloaded here, so the judge is trained in the same run: a small CNN
(:mod:`~anomalib_defectgan.benchmark.evaluator`) learns defect class and grade from REAL crops of
the manifest's ``train`` split only. Then the generator and, as a reference, CutPaste paint the
same real donor defects onto the same good canvases, and we report:

* the evaluator's accuracy (class, grade) on real held-out crops: the ceiling;
* its class accuracy on generated crops (target: the donor's class) and grade accuracy (target:
  the canvas' grade): does a transfer keep the defect type and take the canvas' texture?
* the Frechet distance, in the evaluator's feature space, between generated crops and REAL
  defect crops of the ``val``/``test`` splits, with anchors computed in the same run: real vs
  real (disjoint halves of the real defects) and CutPaste vs real. Sample sizes are matched: each
  repeat splits the real defects into halves A and B and compares |A| generated crops with B,
  exactly as A is compared with B;
* mask tightness: IoU between the generator's mask (> 0.5) and the pixels that changed
  (mean over channels of ``|output - canvas| > tau``), and the leak: the share of the changed
  pixels' energy (squared change) that lies outside the mask.

What is judged is what ships: the GAN paints through ``DefectTransferGenerator`` with its
default settings or the ``--window`` / ``--change-scale`` / ``--composite-mode`` /
``--critic-redraws`` given (the code and options that ``defectgan generate``, ``DefectAugmented``
and the new-grade benchmark paint with), CutPaste and the NSA-style Poisson copy-paste through
``CutPasteGenerator``, with the settings of the new-grade benchmark's arms.

Layout: :mod:`~anomalib_defectgan.benchmark.gan_quality.sampling` (which rows play which part,
painting the samples), :mod:`~anomalib_defectgan.benchmark.gan_quality.metrics`,
:mod:`~anomalib_defectgan.benchmark.gan_quality.report`; :func:`run` puts them together; the
command line is :mod:`anomalib_defectgan.commands.gan_quality`.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_defectgan.benchmark.evaluator import CropSampler, train_evaluator
from anomalib_defectgan.benchmark.gan_quality.metrics import matched_frechet, score_generated
from anomalib_defectgan.benchmark.gan_quality.sampling import (
    ARMS,
    check_channels,
    generate,
    load_checked_generator,
    plan_rows,
    write_figure,
)
from anomalib_defectgan.data.manifest import read_manifest, vocabularies
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.transfer_options import transfer_settings


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the results dictionary (also printed, and saved with ``--json``)."""
    started = time.perf_counter()
    gan = load_checked_generator(args.generator)
    settings = transfer_settings(args)
    frame = read_manifest(args.manifest)
    check_channels(args.generator, args.manifest, gan.channels, frame)
    crop = int(args.crop or gan.crop_size)
    stride = gan.net.code_stride
    if crop % stride or crop < 16:
        raise DefectGanError(f"--crop must be a multiple of the GAN's code stride {stride} and at least 16, got {crop}")
    plan = plan_rows(frame, args.manifest, gan.classes, args.new_grade, seed=args.seed)
    classes, grades = vocabularies(frame)
    print(f"evaluator: {len(plan.train)} train rows, {len(plan.val)} val rows, crop {crop}, "
          f"{args.evaluator_steps} steps", flush=True)
    evaluator = train_evaluator(plan.train, classes, grades, crop, gan.channels, steps=args.evaluator_steps,
                                batch_size=args.batch_size, seed=args.seed)
    rng = np.random.default_rng([args.seed, 41])
    val_sampler = CropSampler(plan.val, classes, grades, crop, gan.channels)
    val_crops = val_sampler.crops(np.repeat(np.arange(len(val_sampler)), args.val_crops), rng)
    class_acc, grade_acc = evaluator.accuracy(val_crops, args.batch_size)
    ref_sampler = CropSampler(plan.reference, classes, grades, crop, gan.channels)
    reference = evaluator.judge(ref_sampler.crops(range(len(ref_sampler)), rng).images, args.batch_size).features
    print(f"generating {args.num} samples per generator", flush=True)
    generation_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gan-quality-") as workdir:
        samples, gen_notes = generate(args.generator, plan, args.num, crop, args.batch_size, args.seed,
                                      Path(workdir), gan.channels, settings)
        if args.figure:
            write_figure(args.generator, plan, crop, gan.channels, args.figure_per_class, args.seed,
                         Path(args.figure), Path(workdir), settings)
    generation_seconds = time.perf_counter() - generation_started
    scores, features = {}, {}
    for arm in ARMS:
        scores[arm], features[arm] = score_generated(evaluator, samples[arm], args.batch_size)
    frechet = matched_frechet(reference, features, repeats=args.repeats, seed=args.seed)
    anchor = frechet["real_vs_real"]["mean"]
    for arm in ARMS:
        frechet[arm]["ratio_to_real"] = frechet[arm]["mean"] / anchor if anchor > 0 else math.nan
    return {
        "benchmark": "gan-quality",
        "argv": list(getattr(args, "argv", []) or []),
        "generator": str(Path(args.generator).resolve()),
        "manifest": str(Path(args.manifest).resolve()),
        "new_grade": args.new_grade,
        "canvas_grades": list(plan.canvas_rows),
        "crop": crop,
        "num": args.num,
        **settings,
        "seed": args.seed,
        "classes": classes,
        "grades": grades,
        "evaluator": {"steps": args.evaluator_steps, "batch_size": args.batch_size, "train_rows": len(plan.train),
                      "val_rows": len(plan.val), "val_crops": len(val_crops), "class_accuracy": class_acc,
                      "grade_accuracy": grade_acc, "seconds": evaluator.seconds},
        "frechet": {"reference_defects": len(reference), "repeats": args.repeats, **frechet},
        "generated": scores,
        "donors": len(plan.donors),
        "notes": plan.notes + gen_notes,
        "generation_seconds": generation_seconds,
        "seconds": time.perf_counter() - started,
    }
