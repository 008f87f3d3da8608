"""``defectgan generate``: paint synthetic defects onto a new grade's good images.

Writes an anomalib ``Folder`` tree::

    OUT/good/<stem>.png                 the readable good images (PNG copies)
    OUT/defect/<nnnnn>_<stem>.png       synthetic defects
    OUT/masks/<nnnnn>_<stem>_mask.png   their masks
    OUT/manifest.csv                    our manifest schema + generator, donor and placement columns
    OUT/contact_sheet.png               the first outputs, mask outlines in red

so that ``Folder(name="x", root=OUT, normal_dir="good", abnormal_dir="defect", mask_dir="masks")``
loads it. Every file is written atomically. An item counts as finished when its record
``OUT/.progress/<name>.json`` exists (written last), so a rerun with the same settings skips
finished items and an interrupted run resumes cleanly; ``--overwrite`` starts again. A write that
fails (a full disk) stops the run with a one-line error naming the file and leaves no part of
the unfinished item behind. The pieces: :mod:`anomalib_defectgan.generation` (the output store,
the paint loop, the manifest writer); :func:`generate_dataset` runs the command from Python.

Item ``i`` draws every random choice (donor, orientation, placement, window, redraws) from its
own generator seeded by :func:`~anomalib_defectgan.generation.paint.item_seed` ``(--seed, i)``, and the good image it is painted on is
``i`` modulo the number of good images, so it gets the same defect in whatever batch it lands,
uninterrupted or resumed. Every setting that changes the outputs is recorded in
``OUT/.progress/run.json`` and a resume with another value is refused, naming it (the machine is
not: another CPU or torch build may round differently). ``--batch-size`` changes no CutPaste/NSA
output (each image is pasted on its own) and is not recorded for them. It is recorded for
DefectGAN, with ``--backend`` and the torch thread count: the GAN's float results differ in the
last bits with the batch it runs in and with the threads (the convolution kernels are picked by
shape), which moves a few pixels by one grey level (an untrained 64 px GAN, ``--mask-source gan``:
5 pixels of 96 items, batch 3 or 8 against 1). So a resumed DefectGAN run repaints the whole batch
an unfinished item belongs to, as the uninterrupted run painted it, and keeps the new items only.

Several processes, GPUs or nodes: launched by ``torchrun`` (``WORLD_SIZE`` > 1), every rank runs
this command in a :mod:`torch.distributed` group (:mod:`anomalib_defectgan.utils.distributed`:
``gloo`` on CPU, ``nccl`` and ``cuda:LOCAL_RANK`` for ``--device cuda``). Rank 0 alone checks and
claims OUT, writes ``run.json`` and the good copies, then a barrier. The items are cut into the
batches one process paints (``--batch-size``); the batches not finished yet are dealt round robin
(the ``k``-th pending batch to rank ``k % WORLD_SIZE``), and each rank paints and writes its items
as above. After a final barrier rank 0 alone writes ``manifest.csv`` and the contact sheet from
the items' records. Every item keeps its seed and its batch, so the tree equals a single process's
byte for byte, DefectGAN's too given the same thread count (recorded) and kind of device; the
world size is not recorded, and a resume may use another. OUT must be one folder that every rank
sees (a shared file system across nodes). A rank that fails (a full disk) makes every rank stop
with its error at the next barrier, after the others finished their share (kept for a rerun); a
rank that dies outright is caught by ``torchrun``, or ends the others' wait after
``--dist-timeout`` minutes.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from anomalib_defectgan.data.image_contract import image_channels
from anomalib_defectgan.data.image_io import list_images, read_image
from anomalib_defectgan.errors import DefectGanError, ImageReadError, summarize
from anomalib_defectgan.generation.manifest_writer import GenerateResult, write_outputs
from anomalib_defectgan.generation.paint import paint_items
from anomalib_defectgan.generation.store import GenerateStore
from anomalib_defectgan.utils import distributed
from anomalib_defectgan.utils.transfer_options import add_transfer_options, transfer_settings

GENERATORS = ("defectgan", "cutpaste", "nsa")


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(prog="defectgan generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--normal-dir", required=True, type=Path, help="Folder of good images of the new grade.")
    parser.add_argument("--defect-bank", required=True, type=Path,
                        help="Donor defects: a manifest, or a folder of defect images with masks.")
    parser.add_argument("--num", required=True, type=int, help="Number of defect images to write.")
    parser.add_argument("--out", required=True, type=Path, help="Output folder (anomalib Folder layout).")
    parser.add_argument("--checkpoint", type=Path, help="DefectGAN generator (needed by --generator defectgan).")
    parser.add_argument("--generator", choices=GENERATORS, default="defectgan")
    parser.add_argument("--classes", nargs="+", help="Defect classes to use (default: all in the bank).")
    parser.add_argument("--class-weights", nargs="+", type=float, help="Relative weight per --classes entry.")
    parser.add_argument("--bank-grades", nargs="+",
                        help="Use only donors of these grades (manifest banks; leave the new grade out).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8,
                        help="Images per generator call (changes no CutPaste/NSA output; recorded for DefectGAN).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", choices=("torch", "openvino"), default="torch",
                        help="DefectGAN inference backend.")
    parser.add_argument("--mask-threshold", type=float, default=0.1,
                        help="DefectGAN soft-mask value from which a pixel counts as defect (--mask-source gan).")
    parser.add_argument("--mask-dilation", type=int, default=2,
                        help="DefectGAN: growth (px) of donor masks (--mask-source donor).")
    add_transfer_options(parser, "DefectGAN", strength=True, composite=True)
    parser.add_argument("--channels", type=int, choices=(1, 3),
                        help="Image channels (default: 3 if one of 8 good images spread over the folder has colour, "
                             "else 1).")
    parser.add_argument("--grade", help="Grade name written to the manifest (default: the normal dir's name).")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train", help="Manifest split.")
    parser.add_argument("--overwrite", action="store_true", help="Redo everything in an earlier OUT.")
    parser.add_argument("--strict", action="store_true", help="Fail on unreadable good images instead of skipping.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    parser.add_argument("--dist-timeout", type=float, metavar="MIN",
                        default=distributed.DEFAULT_TIMEOUT.total_seconds() / 60,
                        help="Under torchrun: minutes a rank waits for the others at a barrier (default 30).")
    return parser


def _readable(paths: list[Path], channels: int) -> tuple[list[Path], list[str]]:
    good, bad = [], []
    for path in paths:
        try:
            read_image(path, channels)
            good.append(path)
        except ImageReadError as err:
            bad.append(f"{path.name} ({err.problem})")
    return good, bad


def _generator(args: argparse.Namespace) -> Any:
    """The generator object asked for on the command line (probability 1: every item gets a defect)."""
    if args.generator == "defectgan" and args.checkpoint is None:
        raise DefectGanError("--generator defectgan needs --checkpoint (or use --generator cutpaste)")
    from anomalib_defectgan.generators.defect_bank import DefectBank
    from anomalib_defectgan.generators.factory import build_generator

    bank = DefectBank(args.defect_bank, classes=args.classes, grades=args.bank_grades)
    transfer = {"backend": args.backend, "grade": args.grade, "mask_threshold": args.mask_threshold,
                "mask_dilation": args.mask_dilation, **transfer_settings(args)}
    return build_generator(args.generator, bank, args.checkpoint, seed=args.seed, classes=args.classes,
                           class_weights=args.class_weights, device=args.device, transfer=transfer)


def _good_names(paths: list[Path]) -> dict[Path, str]:
    stems = [p.stem for p in paths]
    return {p: (p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix[1:]}") for p in paths}


def generate_dataset(normal_dir: str | Path, defect_bank: str | Path, num: int, out: str | Path,
                     **options: Any) -> GenerateResult:
    """Run ``defectgan generate`` from Python (one process); the options are the command's.

    Args:
        normal_dir: Folder of good images of the new grade.
        defect_bank: Donor defects: a manifest, or a folder of defect images with masks.
        num: Number of defect images to write.
        out: Output folder.
        **options: Any other option of the command, by its Python name (``checkpoint``,
            ``generator``, ``seed``, ``grade``, ``overwrite``, ``window``, ...); defaults as ``--help`` says.

    Raises:
        DefectGanError: An unknown option, or what the command would report.
    """
    parser = build_parser()
    args = parser.parse_args(["--normal-dir", str(normal_dir), "--defect-bank", str(defect_bank), "--num", str(num),
                              "--out", str(out), "--no-progress"])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise DefectGanError(f"generate_dataset: unknown options {', '.join(unknown)}")
    for name, value in options.items():
        setattr(args, name, Path(value) if name == "checkpoint" and value is not None else value)
    return _run(args)


def main(argv: list[str]) -> int:
    """Run ``defectgan generate``; see ``--help``. Under ``torchrun``, every rank runs it (module docstring)."""
    _run(build_parser().parse_args(argv))
    return 0


def _run(args: argparse.Namespace) -> GenerateResult | None:
    if args.num < 1 or args.batch_size < 1:
        raise DefectGanError("--num and --batch-size must be at least 1")
    if args.dist_timeout <= 0:
        raise DefectGanError("--dist-timeout must be positive")
    with distributed.process_group(args.device, datetime.timedelta(minutes=args.dist_timeout)) as device:
        return _generate(args, device)


def _settings(args: argparse.Namespace, normals: list[Path], channels: int, grade: str) -> dict[str, Any]:
    """Every setting that changes the outputs (recorded in run.json; a resume must match them)."""
    import torch

    return {"normal_dir": str(args.normal_dir.resolve()), "defect_bank": str(args.defect_bank.resolve()),
            "checkpoint": str(args.checkpoint.resolve()) if args.checkpoint else "", "generator": args.generator,
            "classes": args.classes, "class_weights": args.class_weights, "bank_grades": args.bank_grades,
            "mask_threshold": args.mask_threshold, "mask_source": args.mask_source,
            "mask_dilation": args.mask_dilation, "min_change": args.min_change,
            "critic_redraws": args.critic_redraws, "seed": args.seed, "num": args.num,
            "seeding": "per-item", "device": args.device,
            **({"window": args.window} if args.window else {}),
            **({"placement": args.placement} if args.generator == "defectgan" else {}),
            **({"change_scale": args.change_scale} if args.change_scale != 1.0 else {}),
            **({"max_gain": args.max_gain} if args.max_gain is not None else {}),
            **({"min_strength": args.min_strength} if args.min_strength != 1.0 else {}),
            **({"composite_mode": args.composite_mode} if args.composite_mode else {}),
            **({"change_region": args.change_region} if args.change_region else {}),
            **({"backend": args.backend, "batch_size": args.batch_size, "threads": torch.get_num_threads()}
               if args.generator == "defectgan" else {}),
            "channels": channels, "grade": grade, "split": args.split,
            # items are named after the good images they use: a changed folder must not resume
            "normal_files": hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in normals)
                                           .encode()).hexdigest()}


def _generate(args: argparse.Namespace, device: str) -> GenerateResult | None:
    """The command on one rank (the only one in a plain process), painting on ``device``.

    Returns:
        What was written (on rank 0; None on the other ranks).
    """
    rank = distributed.world().rank
    with distributed.together():
        if not args.normal_dir.is_dir():
            raise DefectGanError(f"--normal-dir {args.normal_dir}: not a folder")
        normals = list_images(args.normal_dir)
        if not normals:
            raise DefectGanError(f"--normal-dir {args.normal_dir}: no images found (empty normal dir)")
    store = GenerateStore(args.out.resolve())
    channels = args.channels or image_channels(normals)[0]
    grade = args.grade or args.normal_dir.resolve().name
    settings = _settings(args, normals, channels, grade)
    ranks = distributed.all_gather(settings)  # the ranks paint one run: the same inputs, threads, ...
    differ = sorted({k for other in ranks for k in set(other) | set(ranks[0]) if other.get(k) != ranks[0].get(k)})
    if differ:
        raise DefectGanError(f"the ranks disagree on {', '.join(differ)} (rank 0: "
                             f"{'; '.join(f'{k}={json.dumps(ranks[0].get(k))}' for k in differ)}); give every "
                             "rank the same inputs, paths and OMP_NUM_THREADS")
    args.device = device  # cuda:LOCAL_RANK under torchrun; run.json keeps the --device asked for
    created = False
    try:
        with distributed.together():  # rank 0 alone checks and claims OUT; every rank builds its generator
            if rank == 0:
                created = store.claim(settings, args.overwrite)
            usable, unreadable = _readable(normals, channels)
            if unreadable and (args.strict or not usable):
                reason = "--strict" if usable else "no readable good image left"
                raise DefectGanError(f"--normal-dir {args.normal_dir}: unreadable images ({reason}) "
                                     f"{summarize(unreadable)}")
            generator = _generator(args)
    except BaseException:
        if created:
            shutil.rmtree(store.out, ignore_errors=True)
        raise
    good_names = _good_names(usable)
    with distributed.together():  # rank 0 prepares OUT before any rank paints
        if rank == 0:
            if unreadable:
                print(f"defectgan generate: skipping unreadable images {summarize(unreadable)}", file=sys.stderr)
            store.start(settings, args.overwrite)
            for path, name in good_names.items():
                store.write_good(name, read_image(path, channels))
    names = [f"{i:05d}_{good_names[usable[i % len(usable)]]}" for i in range(args.num)]
    sources = [usable[i % len(usable)] for i in range(args.num)]
    paint_items(generator, store, names, sources, channels, args.device, args.seed, args.batch_size,
                args.generator, progress=not args.no_progress)
    result = None
    with distributed.together():  # rank 0 alone merges the records; every rank ends with its outcome
        if rank == 0:
            result = write_outputs(store, args.generator, grade, args.split, good_names, names)
            print(f"defectgan generate: {result.defects} defect images + {result.goods} good images in {store.out}"
                  + (f"; {len(result.left_out)} items got an empty mask and were left out: "
                     f"{summarize(result.left_out)}" if result.left_out else ""))
    return result
