"""``defectgan benchmark classifier``: DefectClassifier latency and AUROC, PyTorch eager vs OpenVINO.

Exports one DefectClassifier through anomalib (``Engine.export``, opset 18) to OpenVINO FP32, FP16
and INT8_PTQ (NNCF, calibrated on the validation split), then times, on the CPU, the whole
exported graph (resize + normalise + network + post-processing) against the same Lightning module
in eager PyTorch (``torch.inference_mode``), at each ``--batch-sizes``. Each timing is the median
over ``--runs`` runs of the mean of ``--iters`` calls (after warm-up); ratios are to eager at the
same batch size. OpenVINO models are reshaped to the static input shape and compiled with the
LATENCY hint. Every variant also scores the test split one image at a time: image AUROC, and the
share of test images whose predicted label equals eager PyTorch's.

Without ``--ckpt`` a model is trained first for ``--epochs`` on one grade (``--grade``) of a
procedural steel world (``--dataset``, rendered into a temporary folder if not given), with
CutPaste defects from another grade (``--donor-grade``) and a quarter of the grade's real
defects; the test split is the rest of that grade's real defects and its good test images.
anomalib's PostProcessor clamps normalised scores to [0, 1], so a saturated model produces ties
that a variant's rounding can break: read AUROC together with the label agreement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalib_defectgan.benchmark.machine import cpu_name
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.atomic import atomic_write_text

PRECISIONS = ("fp32", "fp16", "int8")
DEFECT_CLASSES_SUBDIR = "ground_truth"


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark classifier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="Trained DefectClassifier checkpoint (default: train one).")
    parser.add_argument("--dataset", type=Path, help="A `defectgan make-dataset` folder (default: render one).")
    parser.add_argument("--grade", default="pickled", help="Grade trained and tested on.")
    parser.add_argument("--donor-grade", default="hot_rolled", help="Grade whose defects CutPaste pastes.")
    parser.add_argument("--backbone", default="resnet18", help="Backbone when training (default: %(default)s).")
    parser.add_argument("--image-size", type=int, default=256, help="Model input side when training.")
    parser.add_argument("--epochs", type=int, default=4, help="Training epochs when no --ckpt.")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate when training.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per variant (median reported).")
    parser.add_argument("--iters", type=int, default=5, help="Calls per run.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed calls before the runs.")
    parser.add_argument("--threads", type=int, help="torch and OpenVINO threads (default: library defaults).")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--work-dir", type=Path, help="Keep checkpoint and exports here (default: temporary).")
    parser.add_argument("--json", type=Path, help="Also write the results as JSON here.")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def grade_datamodule(dataset: Path, grade: str, batch_size: int = 8, seed: int = 0, **folder_args: Any):
    """anomalib ``Folder`` over one grade of a steel world (MVTec-like layout), all defect classes."""
    from anomalib.data import Folder

    root = Path(dataset) / grade
    if not (root / DEFECT_CLASSES_SUBDIR).is_dir():
        raise DefectGanError(f"{root}: not a grade of a `defectgan make-dataset` folder (no {DEFECT_CLASSES_SUBDIR}/)")
    classes = sorted(p.name for p in (root / DEFECT_CLASSES_SUBDIR).iterdir() if p.is_dir())
    options = {"name": grade, "root": root, "normal_dir": "train/good", "normal_test_dir": "test/good",
               "abnormal_dir": [f"test/{c}" for c in classes], "mask_dir": [f"{DEFECT_CLASSES_SUBDIR}/{c}" for c in classes],
               "train_batch_size": batch_size, "eval_batch_size": batch_size, "num_workers": 0, "seed": seed}
    options.update(folder_args)
    return Folder(**options)


def _datamodule(args: argparse.Namespace, dataset: Path):
    from anomalib_defectgan.data.augmented import DefectAugmented
    from anomalib_defectgan.generators.factory import build_generator

    folder = grade_datamodule(dataset, args.grade, seed=args.seed)
    bank = dataset / args.donor_grade / "test"
    return DefectAugmented(folder, build_generator("cutpaste", bank, seed=args.seed), synthetic_ratio=0.5,
                           real_defects_in_train=0.25, seed=args.seed)


def _train(args: argparse.Namespace, datamodule: Any, work: Path):
    from anomalib.engine import Engine

    from anomalib_defectgan.models.defect_classifier import DefectClassifier

    torch.manual_seed(args.seed)
    model = DefectClassifier(backbone=args.backbone, image_size=args.image_size, lr=args.lr, visualizer=False)
    engine = Engine(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=str(work / "train"))
    engine.fit(model, datamodule=datamodule)
    return model


def _export(model: Any, precision: str, datamodule: Any, work: Path) -> Path:
    from anomalib.deploy import CompressionType
    from anomalib.engine import Engine

    compression = {"fp32": None, "fp16": CompressionType.FP16, "int8": CompressionType.INT8_PTQ}[precision]
    return Path(Engine(accelerator="cpu", logger=False).export(
        model, export_type="openvino", export_root=work / f"export_{precision}", compression_type=compression,
        datamodule=datamodule if precision == "int8" else None, onnx_kwargs={"opset_version": 18}))


def _time(call: Callable[[], Any], runs: int, iters: int, warmup: int) -> float:
    """Median over runs of the mean seconds per call."""
    for _ in range(warmup):
        call()
    means = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(iters):
            call()
        means.append((time.perf_counter() - start) / iters)
    return statistics.median(means)


def _compile(xml: Path, shape: tuple[int, ...] | None, threads: int | None):
    import openvino as ov

    core = ov.Core()
    network = core.read_model(str(xml))
    if shape is not None:
        network.reshape({network.input(0): ov.PartialShape(list(shape))})
    from anomalib_defectgan.utils.openvino_precision import compile_config

    return core.compile_model(network, "CPU", compile_config(threads, PERFORMANCE_HINT="LATENCY"))



def _output(compiled: Any, name: str) -> Any:
    for output in compiled.outputs:
        if name in output.get_names():
            return output
    raise DefectGanError(f"the exported model has no {name!r} output")


def _test_images(datamodule: Any) -> tuple[list[torch.Tensor], np.ndarray]:
    images, labels = [], []
    for batch in datamodule.test_dataloader():
        images.extend(batch.image)
        labels.extend(batch.gt_label.int().tolist())
    return images, np.asarray(labels)


def _auroc(labels: np.ndarray, scores: list[float]) -> float:
    from torchmetrics.functional.classification import binary_auroc

    return float(binary_auroc(torch.tensor(scores, dtype=torch.float32), torch.from_numpy(labels)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train or load, export, time and score; return the results."""
    from anomalib_defectgan.models.defect_classifier import DefectClassifier

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="defectgan_bench_clf_") as tmp:
        work = Path(args.work_dir or tmp)
        dataset = args.dataset
        if dataset is None:
            from anomalib_defectgan.data.synthetic_steel import make_synthetic_steel

            dataset = work / "synthetic_steel"
            if not dataset.exists():
                make_synthetic_steel(dataset, size=args.image_size, seed=args.seed, good_per_grade=100,
                                     grades=sorted({args.grade, args.donor_grade}), progress=False)
        datamodule = _datamodule(args, Path(dataset))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if args.ckpt is not None:
                model = DefectClassifier.load_from_checkpoint(args.ckpt, map_location="cpu")
            else:
                model = _train(args, datamodule, work)
            model = model.eval().cpu()
            datamodule.setup("test")
            images, labels = _test_images(datamodule)
            size = model.input_size or (args.image_size, args.image_size)
            results: dict[str, Any] = {
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "cpu": cpu_name(), "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(), "backbone": model.hparams.get("backbone"),
                "input": list(size), "test_images": len(images), "latency_ms": {}, "auroc": {}}
            with torch.inference_mode():
                eager = [model(image[None]) for image in images]
            eager_labels = np.array([bool(out.pred_label) for out in eager])
            results["auroc"]["eager"] = _auroc(labels, [float(out.pred_score) for out in eager])
            results["label_agreement"] = {"eager": 1.0}
            for batch_size in args.batch_sizes:
                sample = torch.rand(batch_size, 3, *size)
                with torch.inference_mode():
                    seconds = _time(lambda s=sample: model(s), args.runs, args.iters, args.warmup)
                results["latency_ms"][f"eager/b{batch_size}"] = 1000 * seconds
            for precision in args.precisions:
                xml = _export(model, precision, datamodule, work)
                scorer = _compile(xml, None, args.threads)
                outputs = [scorer(image[None].numpy()) for image in images]
                scores = [float(np.asarray(out[_output(scorer, "pred_score")]).reshape(-1)[0]) for out in outputs]
                predicted = np.array([bool(np.asarray(out[_output(scorer, "pred_label")]).reshape(-1)[0])
                                      for out in outputs])
                results["auroc"][precision] = _auroc(labels, scores)
                results["label_agreement"][precision] = float(np.mean(predicted == eager_labels))
                for batch_size in args.batch_sizes:
                    compiled = _compile(xml, (batch_size, 3, *size), args.threads)
                    sample = np.random.default_rng(0).random((batch_size, 3, *size), dtype=np.float32)
                    request = compiled.create_infer_request()
                    seconds = _time(lambda r=request, s=sample: r.infer(s), args.runs, args.iters, args.warmup)
                    results["latency_ms"][f"{precision}/b{batch_size}"] = 1000 * seconds
    return results


def format_table(results: dict[str, Any], batch_sizes: list[int], precisions: list[str]) -> str:
    """Markdown table: latency per image batch, speed-up over eager, AUROC."""
    lines = ["| variant | " + " | ".join(f"batch {b}: ms (x eager)" for b in batch_sizes) + " | image AUROC | labels = eager |",
             "|---" * (len(batch_sizes) + 3) + "|"]
    for variant in ["eager", *precisions]:
        cells = []
        for b in batch_sizes:
            ms = results["latency_ms"][f"{variant}/b{b}"]
            ratio = results["latency_ms"][f"eager/b{b}"] / ms
            cells.append(f"{ms:.1f} ({ratio:.2f}x)")
        name = "PyTorch eager" if variant == "eager" else f"OpenVINO {variant.upper()}"
        agreement = results["label_agreement"][variant]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {results['auroc'][variant]:.4f} | {agreement:.1%} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``defectgan benchmark classifier``."""
    args = build_parser().parse_args(argv)
    if args.ckpt is not None and not args.ckpt.is_file():
        raise DefectGanError(f"{args.ckpt}: checkpoint not found")
    results = run(args)
    print(f"DefectClassifier {results['backbone']} at {results['input'][0]}x{results['input'][1]}, "
          f"{results['date']}, {results['cpu']}, {results['cores']} cores, torch threads {results['torch_threads']}, "
          f"{results['test_images']} test images; medians of {args.runs} runs x {args.iters} calls")
    print(format_table(results, args.batch_sizes, args.precisions))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0
