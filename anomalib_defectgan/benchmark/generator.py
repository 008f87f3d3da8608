"""``defectgan benchmark generator``: synthetic-anomaly generator throughput vs anomalib's Perlin.

Times, in one run and on the same batches (``--batch`` random 3-channel ``--size`` px images,
every image gets a defect: ``probability=1``): anomalib's ``PerlinAnomalyGenerator`` (no texture
folder: Perlin noise), ``CutPasteGenerator``, ``DefectTransferGenerator`` with the PyTorch
backend and with the OpenVINO backend. Prints img/s per wall-clock second and per CPU second of
this process (all its threads), each with the ratio to Perlin; on a machine shared with other
jobs the CPU-second rate is the steadier figure.

Without ``--checkpoint`` an untrained generator of the TINY configuration
(``configs/defect_gan/tiny.yaml``: 64 px crops, 1 channel) is timed: speed depends on the
architecture, not the weights. Without ``--defect-bank`` a small procedural steel world is
rendered into a temporary folder and used as the bank. Donor codes are encoded before timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from anomalib_defectgan.benchmark.machine import machine_summary

TINY = {"base_channels": 16, "max_channels": 64, "zd_channels": 8, "sd_dim": 16, "zt_dim": 64, "w_dim": 64,
        "embed_dim": 16, "mapping_layers": 2}


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark generator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="Image side (px).")
    parser.add_argument("--batch", type=int, default=16, help="Images per call.")
    parser.add_argument("--iters", type=int, default=10, help="Timed calls per generator.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed calls first.")
    parser.add_argument("--checkpoint", type=Path, help="DefectGAN generator (default: untrained TINY).")
    parser.add_argument("--defect-bank", type=Path, help="Donor defects (default: a rendered steel world).")
    parser.add_argument("--threads", type=int, help="torch and OpenVINO threads (default: library defaults).")
    parser.add_argument("--skip", nargs="*", default=[], choices=["perlin", "cutpaste", "torch", "openvino"],
                        help="Generators to leave out.")
    parser.add_argument("--json", type=Path, help="Also write the results as JSON here.")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _default_bank(folder: Path) -> Path:
    from anomalib_defectgan.data.synthetic_steel import make_synthetic_steel

    make_synthetic_steel(folder / "steel", size=128, per_class=2, good_per_grade=1, seed=0, progress=False)
    return folder / "steel" / "manifest.csv"


def _default_checkpoint(folder: Path, bank: Path) -> Path:
    from anomalib_defectgan.generators.defect_bank import DefectBank
    from anomalib_defectgan.models.defect_gan import DefectGanNet
    from anomalib_defectgan.models.defect_gan.inference import save_generator

    classes = ["good", *DefectBank(bank).classes]
    config = {**TINY, "channels": 1, "num_classes": len(classes), "num_grades": 1}
    torch.manual_seed(0)
    save_generator(DefectGanNet(**config), config, classes, ["unknown"], 64, folder / "generator")
    return folder / "generator"


def time_generator(generator: Callable[[torch.Tensor], Any], images: torch.Tensor, iters: int,
                   warmup: int) -> tuple[float, float]:
    """Images per wall-clock second and per process CPU second of ``generator(images)``.

    ``iters`` timed calls follow ``warmup`` untimed ones.
    """
    with torch.no_grad():
        for _ in range(warmup):
            generator(images)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            generator(images)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    count = iters * images.shape[0]
    return count / max(wall, 1e-9), count / max(cpu, 1e-9)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Build the generators, time them and return the results."""
    from anomalib_defectgan.generators.defect_bank import DefectBank
    from anomalib_defectgan.generators.factory import build_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    bank_path = args.defect_bank or _default_bank(workdir)
    checkpoint = args.checkpoint or _default_checkpoint(workdir, bank_path)
    bank = DefectBank(bank_path)
    torch.manual_seed(args.seed)
    images = torch.rand(args.batch, 3, args.size, args.size)
    builders: dict[str, Callable[[], Any]] = {
        "perlin": lambda: build_generator("perlin"),
        "cutpaste": lambda: build_generator("cutpaste", bank, seed=args.seed),
        "torch": lambda: build_generator("defectgan", bank, checkpoint, seed=args.seed,
                                         transfer={"cache_dir": workdir / "cache"}),
        "openvino": lambda: build_generator("defectgan", bank, checkpoint, seed=args.seed,
                                            transfer={"cache_dir": workdir / "cache", "backend": "openvino",
                                                      "openvino_threads": args.threads}),
    }
    labels = {"perlin": "PerlinAnomalyGenerator (anomalib)", "cutpaste": "CutPasteGenerator",
              "torch": "DefectTransferGenerator torch", "openvino": "DefectTransferGenerator openvino"}
    rates: dict[str, tuple[float, float]] = {}
    for name, build in builders.items():
        if name not in args.skip:
            rates[name] = time_generator(build(), images, args.iters, args.warmup)
    from anomalib_defectgan.models.defect_gan.inference import load_generator

    gan = load_generator(checkpoint)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_summary(),
        "torch_threads": torch.get_num_threads(), "size": args.size, "batch": args.batch, "iters": args.iters,
        "checkpoint": str(args.checkpoint) if args.checkpoint else "untrained TINY (64 px crops, 1 channel)",
        "generator_parameters": sum(p.numel() for p in gan.parameters()), "crop_size": gan.crop_size,
        "bank_donors": len(bank),
        "img_per_wall_s": {labels[k]: v[0] for k, v in rates.items()},
        "img_per_cpu_s": {labels[k]: v[1] for k, v in rates.items()},
        "ratio_to_perlin_wall": ({labels[k]: v[0] / rates["perlin"][0] for k, v in rates.items()}
                                 if "perlin" in rates else {}),
        "ratio_to_perlin_cpu": ({labels[k]: v[1] / rates["perlin"][1] for k, v in rates.items()}
                                if "perlin" in rates else {}),
    }


def main(argv: list[str]) -> int:
    """Run the benchmark and print a table."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="defectgan-bench-") as tmp:
        result = run(args, Path(tmp))
    print(f"generator benchmark  {result['date']}  {result['machine']}, torch threads {result['torch_threads']}")
    print(f"{args.batch} x 3 x {args.size} x {args.size} images per call, {args.iters} timed calls, probability 1; "
          f"DefectGAN: {result['checkpoint']}, {result['generator_parameters']:,} parameters, "
          f"crop {result['crop_size']} px; bank: {result['bank_donors']} donors")
    print(f"{'generator':<36}{'img/s wall':>12}{'x Perlin':>10}{'img/CPU-s':>12}{'x Perlin':>10}")
    for name, wall in result["img_per_wall_s"].items():
        cpu = result["img_per_cpu_s"][name]
        ratios = [result[f"ratio_to_perlin_{k}"].get(name) for k in ("wall", "cpu")]
        shown = [f"{r:.2f}" if r is not None else "-" for r in ratios]
        print(f"{name:<36}{wall:>12.1f}{shown[0]:>10}{cpu:>12.1f}{shown[1]:>10}")
    if args.json:
        from anomalib_defectgan.utils.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0
