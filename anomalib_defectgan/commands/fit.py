"""``defectgan fit -c CONFIG [--model.* --data.* --trainer.* --ckpt_path CKPT]``: train DefectGan.

``CONFIG`` is a YAML file or the name of a shipped one (``defect_gan/tiny.yaml``, ``defect_gan/cpu.yaml``,
``defect_gan/steel_128.yaml``, ``defect_gan/steel_256.yaml``), so a wheel install needs no checkout.

Built on :class:`lightning.pytorch.cli.LightningCLI` (jsonargparse), so every init argument of
:class:`~anomalib_defectgan.models.defect_gan.DefectGan` and
:class:`~anomalib_defectgan.data.datamodule.DefectDataModule` and every Trainer flag can be set in
the YAML config or on the command line. When the config sets no logger, a CSV and a TensorBoard
logger share ``<default_root_dir>/version_N``. At the end of fit the model writes
``<log_dir>/samples/final.png`` and ``<log_dir>/generator/generator.{safetensors,json}``.

Resume with ``--ckpt_path CKPT``. The file is checked before anything is written (it must be a
DefectGan checkpoint with optimizer and loop state, loaded with ``weights_only=True``); otherwise
the command prints one line naming the file and the problem and exits 2. A checkpoint that lies
in ``<default_root_dir>/version_N/`` continues that run in ``version_N``: logs, sample grids,
checkpoints and ``generator/`` go there, ``config.yaml`` is rewritten with the new arguments, and
``metrics.csv`` and TensorBoard drop what the earlier run logged at or after the checkpoint's step
(steps that ran after the checkpoint, e.g. before a kill, and that the resumed run logs again).
Any other checkpoint starts a new ``version_N``.

Training stops at the first step whose logged losses are not all finite
(:class:`~anomalib_defectgan.models.defect_gan.callbacks.StopOnNonFiniteLoss`): the command prints
the step, the non-finite loss terms and the last checkpoint written before (which is kept; the
diverged state is not checkpointed and no generator is exported), and exits 2.
"""

from __future__ import annotations

import csv
import os
import pickle
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from anomalib_defectgan.errors import CheckpointError

LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
"""``--ckpt_path`` values Lightning resolves itself (not files); they are passed on unchecked."""

ZIP_MAGIC = b"PK\x03\x04"


def _is_safetensors(path: Path, head: bytes) -> bool:
    """Whether ``head`` (the first 9 bytes of ``path``) opens a safetensors file: a u64 header size, then JSON."""
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def check_resume_checkpoint(path: str | Path) -> int:
    """Check that ``path`` is a DefectGan checkpoint that ``fit`` can resume from; write nothing.

    The file is loaded with ``weights_only=True`` and ``mmap=True`` (no code is unpickled, and the
    tensors are not read into memory).

    Args:
        path: The ``--ckpt_path`` file.

    Returns:
        The checkpoint's ``global_step``: DefectGan counts one step per iteration, so it is also
        the ``step`` (in ``metrics.csv``) of the resumed run's first iteration.

    Raises:
        CheckpointError: The file is missing, truncated, a safetensors file, not a DefectGan
            checkpoint, or a weights-only checkpoint without optimizer and loop state.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "checkpoint not found")
    if not path.is_file():
        raise CheckpointError(path, "not a file (--ckpt_path takes a .ckpt file written by 'defectgan fit')")
    try:
        with path.open("rb") as file:
            head = file.read(9)
    except OSError as err:
        raise CheckpointError(path, f"cannot be read ({err.strerror})") from err
    if _is_safetensors(path, head):
        raise CheckpointError(path, "a safetensors file holds weights only (like generator/generator.safetensors); "
                                    "--ckpt_path takes a Lightning checkpoint, <version_N>/checkpoints/*.ckpt")
    if not head.startswith(ZIP_MAGIC):
        raise CheckpointError(path, "not a torch checkpoint (it is no zip archive)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"a Python object of type {found.group(1)}" if found else "Python objects"
        raise CheckpointError(path, f"holds {what}, which a weights_only=True load refuses to unpickle; "
                                    "it was not written by 'defectgan fit'") from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        reason = str(err).splitlines()[0].split(". ")[0] if str(err) else type(err).__name__
        raise CheckpointError(path, f"truncated or corrupt ({reason})") from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(path, "not a Lightning checkpoint (no state_dict)")
    hparams = checkpoint.get("hyper_parameters") or {}
    if not any(str(key).startswith("net_ema.") for key in checkpoint["state_dict"]) or not hparams.get("classes"):
        owner = f" (a checkpoint of {hparams['_class_path']})" if "_class_path" in hparams else ""
        raise CheckpointError(path, f"not a DefectGan checkpoint: no EMA generator weights or class vocabulary{owner}")
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(path, "a weights-only checkpoint (ModelCheckpoint save_weights_only) cannot resume "
                                    "training: it has no optimizer or loop state")
    return int(checkpoint.get("global_step", 0))


def run_version(checkpoint: str | Path, root: str | Path) -> int | None:
    """``N`` when ``checkpoint`` lies inside ``<root>/version_N/``, else None."""
    try:
        parts = Path(checkpoint).resolve().relative_to(Path(root).resolve()).parts
    except ValueError:
        return None
    match = re.fullmatch(r"version_(\d+)", parts[0]) if len(parts) > 1 else None
    return int(match.group(1)) if match else None


class _ResumedExperimentWriter(ExperimentWriter):
    """CSV writer that continues an existing ``metrics.csv``, keeping its whole rows of steps before ``resume_step``."""

    def __init__(self, log_dir: str, resume_step: int) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            rows = [row for row in reader if None not in row and None not in row.values()
                    and (not row.get("step") or float(row["step"]) < self.resume_step)]
            self.metrics_keys = list(reader.fieldnames or [])
        partial = f"{self.metrics_file_path}.partial"
        with self._fs.open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
        self._fs.mv(partial, self.metrics_file_path)


class _SavedWithCheckpoints:
    """Logger mixin: the logs are written out at each checkpoint and with the first log after it.

    So a killed run's logs hold every step up to its last checkpoint (Lightning's CSV logger
    writes every 100 steps, TensorBoard every 2 minutes). The second write catches the
    checkpoint's own last step, which Lightning logs just after the checkpoint callbacks ran.
    """

    _save_with_next_log = False

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Record metrics; write the logs out when a checkpoint was saved since the last write."""
        super().log_metrics(metrics, step)
        if self._save_with_next_log:
            self._save_with_next_log = False
            self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Write the logs out now and again with the next log."""
        super().after_save_checkpoint(checkpoint_callback)
        self.save()
        self._save_with_next_log = True


class RunCSVLogger(_SavedWithCheckpoints, CSVLogger):
    """:class:`CSVLogger` of ``fit``: ``metrics.csv`` keeps up with the checkpoints and continues on resume.

    Resuming into an existing version (``resume_step`` given), it keeps the rows of steps before
    ``resume_step`` (Lightning's CSV logger would delete the file); rows at or after it were
    logged after the checkpoint and are logged again by the resumed run.

    Args:
        save_dir: ``default_root_dir``.
        version: The run's version; the next free one when None.
        resume_step: The resumed checkpoint's step, when resuming into ``version``.
    """

    def __init__(self, save_dir: str | Path, version: int | None = None, resume_step: int | None = None) -> None:
        super().__init__(save_dir, name="", version=version)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer, created on first use."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = (ExperimentWriter(self.log_dir) if self.resume_step is None
                                else _ResumedExperimentWriter(self.log_dir, self.resume_step))
        return self._experiment


class RunTensorBoardLogger(_SavedWithCheckpoints, TensorBoardLogger):
    """:class:`TensorBoardLogger` of ``fit``: its events keep up with the checkpoints."""


def default_loggers(root: str | Path, resume_version: int | None = None, resume_step: int = 0) -> list[Logger]:
    """CSV and TensorBoard loggers in ``<root>/version_N``: a new N, or ``resume_version`` continued at ``resume_step``.

    Continuing, TensorBoard hides the events the earlier run logged at or after ``resume_step``.
    """
    if resume_version is None:
        csv_logger = RunCSVLogger(root)
        return [csv_logger, RunTensorBoardLogger(root, name="", version=csv_logger.version)]
    return [RunCSVLogger(root, resume_version, resume_step),
            RunTensorBoardLogger(root, name="", version=resume_version, purge_step=resume_step)]


class DefectGanCLI(LightningCLI):
    """LightningCLI that checks ``--ckpt_path`` first, resumes in the checkpoint's version and stops on NaN losses.

    Unless a logger is configured, it logs to CSV and TensorBoard side by side, in the version
    folder that holds the resumed checkpoint when there is one. Their root is made absolute, so
    checkpoints record an absolute folder and a resume from another working directory, or with
    the root spelled otherwise, still writes ``last.ckpt`` (ModelCheckpoint writes
    ``last-v1.ckpt`` beside it when the folder recorded in the checkpoint differs).
    """

    resume_version: int | None = None
    resume_step: int = 0

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check ``ckpt_path`` before Lightning or anything else reads it."""
        super().parse_arguments(parser, args)
        section = self.config.get(str(self.config.get("subcommand")), self.config)
        ckpt_path = section.get("ckpt_path")
        if ckpt_path is None or str(ckpt_path) in LIGHTNING_CKPT_NAMES or str(ckpt_path).startswith("registry"):
            return
        self.resume_step = check_resume_checkpoint(ckpt_path)
        self.resume_version = run_version(ckpt_path, section.get("trainer.default_root_dir") or os.getcwd())
        if self.resume_version is not None:
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        from anomalib_defectgan.models.defect_gan.callbacks import ProgressLog, StopOnNonFiniteLoss

        if config.get("logger") in (None, True):
            root = os.path.abspath(config.get("default_root_dir") or os.getcwd())
            config["logger"] = default_loggers(root, self.resume_version, self.resume_step)
        return super()._instantiate_trainer(config, [*callbacks, StopOnNonFiniteLoss(), ProgressLog()])


def _shipped_configs(args: list[str]) -> list[str]:
    """Replace ``-c NAME`` / ``--config NAME`` that is not a file by the shipped config of that name."""
    from anomalib_defectgan.utils.packaged_configs import resolve_config

    out = list(args)
    for index, value in enumerate(out[:-1]):
        if value in {"-c", "--config"} and not out[index + 1].startswith("-"):
            out[index + 1] = str(resolve_config(out[index + 1]))
    return out


def main(argv: list[str]) -> int:
    """Run the CLI with the ``fit`` subcommand.

    Args:
        argv: Arguments after ``defectgan fit``.

    Returns:
        The exit code (0, or jsonargparse's code for ``--help`` and argument errors).

    Raises:
        CheckpointError: ``--ckpt_path`` is not a DefectGan checkpoint fit can resume from (nothing written).
        TrainingDivergedError: A training loss became NaN or infinite.
    """
    from anomalib_defectgan.data.datamodule import DefectDataModule
    from anomalib_defectgan.models.defect_gan import DefectGan

    args = _shipped_configs(list(argv))
    if args and args[0] == "fit":
        args = args[1:]
    # LightningCLI reads sys.argv (not args=...), so that DDP's launcher, which re-runs
    # sys.argv in each child process, starts the children with the same command.
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "defectgan", "fit", *args]
    try:
        with warnings.catch_warnings():
            # A GAN checkpoint holds the weights after the step, which is what Lightning's note
            # about manual optimisation (printed at every checkpoint) offers to change.
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization",
                                    category=UserWarning)
            DefectGanCLI(
                DefectGan,
                DefectDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_kwargs={"overwrite": True},
                auto_configure_optimizers=False,
            )
    except SystemExit as exit_:  # --help, or an argument error already printed by jsonargparse
        return int(exit_.code or 0)
    finally:
        sys.argv = saved_argv
    return 0
