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
the unfinished item behind.

Item ``i`` draws every random choice (donor, orientation, placement, window, redraws) from its
own generator seeded by :func:`item_seed` ``(--seed, i)``, and the good image it is painted on is
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
import contextlib
import datetime
import errno
import fnmatch
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_defectgan.data.image_contract import image_channels
from anomalib_defectgan.data.image_io import list_images, read_image, write_image
from anomalib_defectgan.errors import DefectGanError, ImageReadError, OutputExistsError, summarize
from anomalib_defectgan.utils import distributed
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.progress import progress_bar
from anomalib_defectgan.utils.transfer_options import add_transfer_options

GENERATORS = ("defectgan", "cutpaste", "nsa")
PROGRESS = ".progress"
OUTPUT_NAMES = ("good", "defect", "masks", PROGRESS, "manifest.csv", "contact_sheet.png")
SHEET_ITEMS = 16
TEMPORARY = ".*.tmp*"  # the names of :func:`~anomalib_defectgan.utils.atomic.atomic_path`'s temporary files


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
    add_transfer_options(parser, "DefectGAN", strength=True)
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


def _debris(path: Path) -> bool:
    """Whether ``path`` is a temporary file or a folder of nothing else (a run that failed before run.json)."""
    if path.is_dir():
        return all(_debris(p) for p in path.iterdir())
    return fnmatch.fnmatch(path.name, TEMPORARY)


def _prepare_out(out: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """Check OUT is writable and belongs to this run; returns whether this call created it."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe."):
            pass
    except OSError as err:
        if created and out.is_dir():
            out.rmdir()
        raise DefectGanError(f"output folder {out} is not writable ({err.strerror or err})") from err
    run_file = out / PROGRESS / "run.json"
    foreign = [p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES]
    if foreign or not (run_file.is_file() or all(_debris(p) for p in out.iterdir())):
        raise OutputExistsError(f"{out} is not empty and was not written by 'defectgan generate' "
                                f"({summarize(foreign or [p.name for p in out.iterdir()])}); choose another --out")
    if run_file.is_file() and not overwrite:
        previous = json.loads(run_file.read_text())
        changed = sorted(k for k in set(settings) | set(previous) if previous.get(k) != settings.get(k))
        if changed:
            raise OutputExistsError(f"{out} holds a run with other settings "
                                    f"({'; '.join(_change(k, previous, settings) for k in changed)}); "
                                    "rerun with the same options to resume, or pass --overwrite")
    return created


def _change(key: str, previous: dict[str, Any], settings: dict[str, Any]) -> str:
    def show(values: dict[str, Any]) -> str:
        return json.dumps(values[key]) if key in values else "unset"

    return f"different {key}: {show(previous)} before, {show(settings)} now"


def item_seed(seed: int, index: int) -> int:
    """The seed of item ``index``'s random draws: a function of ``(seed, index)`` only (63 bits)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "big") >> 1


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Report a failed write of ``path`` as one line naming it (a full disk as such)."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DefectGanError(f"cannot write {path}: the disk is full ({err.strerror}); free space and rerun "
                                 "to resume") from err
        raise DefectGanError(f"cannot write {path}: {err.strerror or err}") from err


def _write_item(out: Path, name: str, image: np.ndarray, mask: np.ndarray, record: dict[str, Any]) -> None:
    """Write an item's image, mask and (last) progress record; a failed write removes the item's files."""
    files = (out / "defect" / f"{name}.png", out / "masks" / f"{name}_mask.png")
    try:
        for path, pixels in zip(files, (image, mask), strict=True):
            with _writing(path):
                write_image(path, pixels)
        with _writing(out / PROGRESS / f"{name}.json"):
            atomic_write_text(out / PROGRESS / f"{name}.json", json.dumps(record, sort_keys=True))
    except DefectGanError:
        for path in files:
            path.unlink(missing_ok=True)
        raise


def _clean(out: Path, overwrite: bool) -> None:
    """Remove stale temporary files of a killed run (``--overwrite``: every earlier output)."""
    if overwrite:
        for name in OUTPUT_NAMES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for folder in (out, *(out / n for n in ("good", "defect", "masks", PROGRESS))):
        if folder.is_dir():
            for stale in folder.glob(TEMPORARY):
                stale.unlink()


def _readable(paths: list[Path], channels: int) -> tuple[list[Path], list[str]]:
    good, bad = [], []
    for path in paths:
        try:
            read_image(path, channels)
            good.append(path)
        except ImageReadError as err:
            bad.append(f"{path.name} ({err.problem})")
    return good, bad


def build_generator(args: argparse.Namespace) -> Any:
    """The generator object asked for on the command line (probability 1: every item gets a defect)."""
    if args.generator == "defectgan" and args.checkpoint is None:
        raise DefectGanError("--generator defectgan needs --checkpoint (or use --generator cutpaste)")
    from anomalib_defectgan.generators.defect_bank import DefectBank

    bank = DefectBank(args.defect_bank, classes=args.classes, grades=args.bank_grades)
    if args.generator in ("cutpaste", "nsa"):
        from anomalib_defectgan.generators.cut_paste import NSA_SETTINGS, CutPasteGenerator

        return CutPasteGenerator(bank, probability=1.0, classes=args.classes, class_weights=args.class_weights,
                                 seed=args.seed, **(NSA_SETTINGS if args.generator == "nsa" else {}))
    from anomalib_defectgan.generators.defect_transfer import DefectTransferGenerator

    try:
        return DefectTransferGenerator(args.checkpoint, bank, probability=1.0, classes=args.classes,
                                       class_weights=args.class_weights, seed=args.seed, device=args.device,
                                       backend=args.backend, grade=args.grade, mask_threshold=args.mask_threshold,
                                       mask_source=args.mask_source, mask_dilation=args.mask_dilation,
                                       min_change=args.min_change, critic_redraws=args.critic_redraws,
                                       window=args.window, change_scale=args.change_scale,
                                       min_strength=args.min_strength)
    except ValueError as err:  # a generator setting out of range: name it, no traceback
        raise DefectGanError(str(err)) from err


def _good_names(paths: list[Path]) -> dict[Path, str]:
    stems = [p.stem for p in paths]
    return {p: (p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix[1:]}") for p in paths}


def _contact_sheet(out: Path, names: list[str]) -> None:
    import cv2

    tiles = []
    for name in names[:SHEET_ITEMS]:
        image = read_image(out / "defect" / f"{name}.png", channels=3)
        mask = read_image(out / "masks" / f"{name}_mask.png", channels=1)[..., 0] >= 128
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        image = cv2.drawContours(np.array(image), contours, -1, (255, 0, 0), 1)
        tiles.append(cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA))
    if not tiles:
        return
    cols = min(4, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * 130, cols * 130, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * 130 + 1:r * 130 + 129, c * 130 + 1:c * 130 + 129] = tile
    write_image(out / "contact_sheet.png", sheet)


def main(argv: list[str]) -> int:
    """Run ``defectgan generate``; see ``--help``. Under ``torchrun``, every rank runs it (module docstring)."""
    args = build_parser().parse_args(argv)
    if args.num < 1 or args.batch_size < 1:
        raise DefectGanError("--num and --batch-size must be at least 1")
    if args.dist_timeout <= 0:
        raise DefectGanError("--dist-timeout must be positive")
    with distributed.process_group(args.device, datetime.timedelta(minutes=args.dist_timeout)) as device:
        return _generate(args, device)


def _generate(args: argparse.Namespace, device: str) -> int:
    """The command on one rank (the only one in a plain process), painting on ``device``."""
    import torch

    rank = distributed.world().rank
    with distributed.together():
        if not args.normal_dir.is_dir():
            raise DefectGanError(f"--normal-dir {args.normal_dir}: not a folder")
        normals = list_images(args.normal_dir)
        if not normals:
            raise DefectGanError(f"--normal-dir {args.normal_dir}: no images found (empty normal dir)")
    out = args.out.resolve()
    channels = args.channels or image_channels(normals)[0]
    grade = args.grade or args.normal_dir.resolve().name
    settings = {"normal_dir": str(args.normal_dir.resolve()), "defect_bank": str(args.defect_bank.resolve()),
                "checkpoint": str(args.checkpoint.resolve()) if args.checkpoint else "", "generator": args.generator,
                "classes": args.classes, "class_weights": args.class_weights, "bank_grades": args.bank_grades,
                "mask_threshold": args.mask_threshold, "mask_source": args.mask_source,
                "mask_dilation": args.mask_dilation, "min_change": args.min_change,
                "critic_redraws": args.critic_redraws, "seed": args.seed, "num": args.num,
                "seeding": "per-item", "device": args.device,
                **({"window": args.window} if args.window else {}),
                **({"change_scale": args.change_scale} if args.change_scale != 1.0 else {}),
                **({"min_strength": args.min_strength} if args.min_strength != 1.0 else {}),
                **({"backend": args.backend, "batch_size": args.batch_size, "threads": torch.get_num_threads()}
                   if args.generator == "defectgan" else {}),
                "channels": channels, "grade": grade, "split": args.split,
                # items are named after the good images they use: a changed folder must not resume
                "normal_files": hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in normals)
                                               .encode()).hexdigest()}
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
                created = _prepare_out(out, settings, args.overwrite)
            usable, unreadable = _readable(normals, channels)
            if unreadable and (args.strict or not usable):
                reason = "--strict" if usable else "no readable good image left"
                raise DefectGanError(f"--normal-dir {args.normal_dir}: unreadable images ({reason}) "
                                     f"{summarize(unreadable)}")
            generator = build_generator(args)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    good_names = _good_names(usable)
    with distributed.together():  # rank 0 prepares OUT before any rank paints
        if rank == 0:
            if unreadable:
                print(f"defectgan generate: skipping unreadable images {summarize(unreadable)}", file=sys.stderr)
            _clean(out, args.overwrite)
            with _writing(out / PROGRESS / "run.json"):
                atomic_write_text(out / PROGRESS / "run.json", json.dumps(settings, indent=1, sort_keys=True))
            for path, name in good_names.items():
                target = out / "good" / f"{name}.png"
                if not target.is_file():
                    with _writing(target):
                        write_image(target, read_image(path, channels))
    names = [f"{i:05d}_{good_names[usable[i % len(usable)]]}" for i in range(args.num)]

    def finished(i: int) -> bool:
        return (out / PROGRESS / f"{names[i]}.json").is_file()

    # Whole batches, as one process paints them (the GAN's last float bits depend on its batch),
    # shared round robin among the ranks; fully finished ones (a resume) are left out before sharing.
    batches = [range(start, min(start + args.batch_size, args.num)) for start in range(0, args.num, args.batch_size)]
    pending = [chunk for chunk in batches if not all(finished(i) for i in chunk)]
    distributed.barrier()  # every rank has listed the pending batches before any writes a record
    mine = distributed.shard(pending)
    bar = progress_bar(sum(len(chunk) for chunk in mine), "generate", "img", disable=args.no_progress or rank != 0)
    with distributed.together():  # every rank has painted its share before rank 0 writes the manifest
        for chunk in mine:
            todo = {i for i in chunk if not finished(i)}
            bar.update(len(chunk) - len(todo))
            if not todo:
                continue
            # The GAN's last float bits depend on its batch: repaint the batch the uninterrupted run painted.
            paint = list(chunk) if args.generator == "defectgan" else sorted(todo)
            by_size: dict[tuple[int, ...], list[int]] = {}
            images = {i: read_image(usable[i % len(usable)], channels) for i in paint}
            for i in paint:
                by_size.setdefault(images[i].shape, []).append(i)
            for group in by_size.values():
                batch = torch.stack([torch.from_numpy(np.array(images[i])).permute(2, 0, 1).float() / 255.0
                                     for i in group]).to(args.device)
                with torch.no_grad():
                    augmented, masks = generator.paint_seeded(batch, [item_seed(args.seed, i) for i in group])
                for j, i in enumerate(group):
                    info = generator.last_info[j]
                    if i not in todo:
                        continue
                    bar.update(1)
                    if info is None or not masks[j].any():
                        continue  # no record: reported (and retried by a rerun) as an empty mask
                    # keys sorted as in a record read back on a resume: the manifest's columns
                    record = dict(sorted({**info, "normal_path": str(usable[i % len(usable)].resolve()),
                                          "generator": args.generator, "seed": args.seed}.items()))
                    _write_item(out, names[i], augmented[j].clamp(0, 1).permute(1, 2, 0).cpu().numpy(),
                                masks[j, 0].cpu().numpy() > 0.5, record)
        bar.close()
    with distributed.together():  # rank 0 alone merges the records; every rank ends with its outcome
        if rank == 0:
            _finish(out, args, grade, good_names, names)
    return 0


def _finish(out: Path, args: argparse.Namespace, grade: str, good_names: dict[Path, str], names: list[str]) -> None:
    """Write the manifest and contact sheet from every finished item's record; report the run."""
    records = {i: json.loads((out / PROGRESS / f"{name}.json").read_text()) for i, name in enumerate(names)
               if (out / PROGRESS / f"{name}.json").is_file()}
    failed = [name for i, name in enumerate(names) if i not in records]  # every other item was just painted
    if not records:
        raise DefectGanError(f"the generator painted no defect: all {len(failed)} masks were empty (an untrained "
                             "or barely trained checkpoint? try a lower --mask-threshold); no manifest written")
    with _writing(out / "manifest.csv"):
        _write_manifest(out, args, grade, good_names, names, records)
    with _writing(out / "contact_sheet.png"):
        _contact_sheet(out, [names[i] for i in sorted(records)])
    print(f"defectgan generate: {len(records)} defect images + {len(good_names)} good images in {out}"
          + (f"; {len(failed)} items got an empty mask and were left out: {summarize(failed)}" if failed else ""))


def _write_manifest(out: Path, args: argparse.Namespace, grade: str, good_names: dict[Path, str],
                    names: list[str], records: dict[int, dict[str, Any]]) -> None:
    import pandas as pd

    from anomalib_defectgan.data.manifest import write_manifest

    source = f"defectgan-generate:{args.generator}"
    rows = [{"image_path": str(out / "good" / f"{name}.png"), "mask_path": "", "label": "good",
             "defect_class": "good", "grade": grade, "split": args.split, "source": source, "mask_kind": "none",
             "normal_path": str(path.resolve())} for path, name in good_names.items()]
    for i in sorted(records):
        record = records[i]
        rows.append({"image_path": str(out / "defect" / f"{names[i]}.png"),
                     "mask_path": str(out / "masks" / f"{names[i]}_mask.png"), "label": "defect",
                     "defect_class": record["defect_class"], "grade": grade, "split": args.split,
                     "source": source, "mask_kind": "pixel",
                     **{k: v for k, v in record.items() if k != "defect_class"}})
    write_manifest(pd.DataFrame(rows, dtype=object).fillna(""), out / "manifest.csv")
