"""``defectgan benchmark gan``: DefectGan training speed on random crops (no dataset needed).

Times full training iterations (forward passes, one D step with lazy R1 at its usual rate, one G
step, EMA update) of a config's model on random donor/canvas/good crops:

* TINY (``configs/defect_gan/tiny.yaml``): iterations per second on the CPU.
* REAL (``configs/defect_gan/steel_256.yaml``): seconds per donor/canvas pair for one
  forward + backward iteration on the CPU, and where CUDA is available, pairs/s and peak memory
  on the GPU (bf16 autocast, the config's batch size).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from anomalib_defectgan.benchmark.machine import cpu_name
from anomalib_defectgan.data.batch import MASK_KIND_IDS, DefectBatch, GanBatch
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.packaged_configs import resolve_config

CLASSES = ["good", "crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
GRADES = ["cold_rolled", "galvanized", "hot_rolled", "pickled"]


def read_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and data init args of a ``defectgan fit`` YAML config."""
    path = Path(path)
    if not path.is_file():
        raise DefectGanError(f"{path}: config not found")
    try:
        config = yaml.safe_load(path.read_text()) or {}
        model = dict(config["model"].get("init_args", config["model"]))
        data = dict(config["data"].get("init_args", config["data"]))
    except (yaml.YAMLError, KeyError, AttributeError, TypeError) as err:
        raise DefectGanError(f"{path}: not a DefectGan fit config with model and data sections ({err})") from err
    return model, data


def random_batch(pairs: int, goods: int, size: int, channels: int, device: torch.device) -> GanBatch:
    """Random crops shaped like a DefectDataModule batch (donors with a square pixel mask)."""

    def part(count: int, defect: bool) -> DefectBatch:
        mask = torch.zeros(count, 1, size, size)
        if defect:
            mask[:, :, size // 3: size // 2, size // 4: 3 * size // 4] = 1.0
        classes = torch.randint(1, len(CLASSES), (count,)) if defect else torch.zeros(count, dtype=torch.long)
        kind = MASK_KIND_IDS["pixel"] if defect else MASK_KIND_IDS["none"]
        return DefectBatch(torch.rand(count, channels, size, size), mask, classes,
                           torch.randint(0, len(GRADES), (count,)), torch.full((count,), kind)).to(device)

    return GanBatch(part(pairs, True), part(pairs, False), part(goods, False))


def build(config: str | Path, device: torch.device) -> tuple[Any, dict[str, Any]]:
    """The config's DefectGan with the procedural world's vocabularies, and its data args."""
    from anomalib_defectgan.models.defect_gan import DefectGan

    model_args, data = read_config(config)
    model_args.update(classes=CLASSES, grades=GRADES, channels=int(data.get("channels", 1)),
                      crop_size=int(data.get("crop_size", 64)), classifier_steps=0)
    model = DefectGan(**model_args).to(device)
    return model, data


def iterate(model: Any, batch: GanBatch, optimizers: tuple[Any, Any], step: int, bf16: bool) -> None:
    """One training iteration outside a Trainer (same calls as ``training_step``)."""
    opt_g, opt_d = optimizers
    r1_every = model.hparams.r1_every
    with torch.autocast(device_type=batch.donor.image.device.type, dtype=torch.bfloat16, enabled=bf16):
        passes = model.forward_passes(batch)
        d_total = sum(model.loss.discriminator_losses(passes, model.critics, r1=r1_every > 0 and step % r1_every == 0).values())
    opt_d.zero_grad(set_to_none=True)
    d_total.backward()
    opt_d.step()
    with torch.autocast(device_type=batch.donor.image.device.type, dtype=torch.bfloat16, enabled=bf16):
        g_losses = model.loss.generator_losses(passes, model.critics)
        g_total = model.loss.generator_total(g_losses)
    opt_g.zero_grad(set_to_none=True)
    g_total.backward()
    opt_g.step()
    model.update_ema()


def time_iterations(config: str | Path, steps: int, pairs: int | None, device: torch.device,
                    bf16: bool = False) -> dict[str, Any]:
    """Average seconds per iteration over ``steps`` iterations after one warm-up iteration."""
    torch.manual_seed(0)
    model, data = build(resolve_config(config), device)
    pairs = pairs or int(data.get("batch_size", 8))
    goods = max(1, pairs // 2) if pairs != int(data.get("batch_size", 8)) else int(data.get("goods_per_batch", 4))
    batch = random_batch(pairs, goods, int(data.get("crop_size", 64)), int(data.get("channels", 1)), device)
    optimizers = model.configure_optimizers()
    iterate(model, batch, optimizers, 1, bf16)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for step in range(steps):
        iterate(model, batch, optimizers, step, bf16)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    result = {
        "config": str(config), "device": str(device), "crop_size": int(data.get("crop_size", 64)),
        "pairs_per_batch": pairs, "goods_per_batch": goods, "iterations_timed": steps,
        "generator_params_M": round(sum(p.numel() for p in model.net.parameters()) / 1e6, 3),
        "discriminator_params_M": round(sum(p.numel() for p in model.discriminator.parameters()) / 1e6, 3),
        "seconds_per_iteration": round(seconds, 4), "iterations_per_second": round(1.0 / seconds, 3),
        "seconds_per_pair": round(seconds / pairs, 4),
    }
    if device.type == "cuda":
        result["pairs_per_second"] = round(pairs / seconds, 2)
        result["peak_memory_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main(argv: list[str]) -> int:
    """Run the benchmark and print (and optionally save) the results as JSON."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark gan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny-config", default="defect_gan/tiny.yaml")
    parser.add_argument("--real-config", default="defect_gan/steel_256.yaml")
    parser.add_argument("--tiny-steps", type=int, default=10, help="Timed TINY iterations.")
    parser.add_argument("--real-steps", type=int, default=1, help="Timed REAL iterations on the CPU.")
    parser.add_argument("--real-pairs", type=int, default=2, help="Pairs per REAL batch on the CPU.")
    parser.add_argument("--gpu-steps", type=int, default=20, help="Timed REAL iterations on a GPU (if any).")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument("--skip-real", action="store_true", help="Only the TINY benchmark.")
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
        "tiny_cpu": time_iterations(args.tiny_config, args.tiny_steps, None, cpu),
    }
    print(json.dumps({"tiny_cpu": results["tiny_cpu"]}, indent=2), flush=True)
    if not args.skip_real:
        results["real_cpu"] = time_iterations(args.real_config, args.real_steps, args.real_pairs, cpu)
        print(json.dumps({"real_cpu": results["real_cpu"]}, indent=2), flush=True)
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            results["gpu_name"] = torch.cuda.get_device_name(gpu)
            results["real_gpu"] = time_iterations(args.real_config, args.gpu_steps, None, gpu, bf16=True)
            print(json.dumps({"real_gpu": results["real_gpu"]}, indent=2), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0
