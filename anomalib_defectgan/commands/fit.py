"""``defectgan fit -c CONFIG [--model.* --data.* --trainer.* --ckpt_path CKPT]``: train DefectGan.

``CONFIG`` is a YAML file or the name of a shipped one (``defect_gan/tiny.yaml``, ``defect_gan/cpu.yaml``,
``defect_gan/steel_128.yaml``, ``defect_gan/steel_256.yaml``), so a wheel install needs no checkout.

Built on :class:`lightning.pytorch.cli.LightningCLI` (jsonargparse), so every init argument of
:class:`~anomalib_defectgan.models.defect_gan.DefectGan` and
:class:`~anomalib_defectgan.data.datamodule.DefectDataModule` and every Trainer flag can be set in
the YAML config or on the command line. Resume with ``--ckpt_path``. When the config sets no
logger, a CSV and a TensorBoard logger share ``<default_root_dir>/version_N``. At the end of fit the
model writes ``<log_dir>/samples/final.png`` and ``<log_dir>/generator/generator.{safetensors,json}``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning.pytorch.cli import LightningCLI


class DefectGanCLI(LightningCLI):
    """LightningCLI that logs to CSV and TensorBoard side by side unless a logger is configured."""

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        if config.get("logger") in (None, True):
            from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

            root = config.get("default_root_dir") or os.getcwd()
            csv = CSVLogger(root, name="")
            config["logger"] = [csv, TensorBoardLogger(root, name="", version=csv.version)]
        return super()._instantiate_trainer(config, callbacks)


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
