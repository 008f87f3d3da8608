"""`anomalib train -c configs/classifier/*.yaml` and `anomalib export` with the DefectClassifier (in-process CLI)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "classifier"
TINY = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
        "--model.init_args.image_size", "64", "--data.init_args.datamodule.init_args.train_batch_size", "4",
        "--data.init_args.datamodule.init_args.eval_batch_size", "8"]


def _cli(args: list[str], run: bool = True):
    from anomalib.cli import AnomalibCLI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnomalibCLI(args=args, run=run)


@pytest.fixture
def world_in_cwd() -> Path:
    """What `defectgan make-dataset` writes (all four grades), tiny: ./datasets/synthetic_steel."""
    from anomalib_defectgan.data import make_synthetic_steel

    make_synthetic_steel("datasets/synthetic_steel", size=64, per_class=2, good_per_grade=12, progress=False)
    return Path("datasets/synthetic_steel")


def test_train_synthetic_steel_config_then_export_cli(world_in_cwd: Path) -> None:
    _cli(["train", "-c", str(CONFIGS / "synthetic_steel.yaml"), *TINY])
    checkpoints = list(Path("results/DefectClassifier/cold_rolled").rglob("*.ckpt"))
    assert len(checkpoints) == 1
    _cli(["export", "--model", "anomalib_defectgan.DefectClassifier", "--ckpt_path", str(checkpoints[0]),
          "--export_type", "openvino", "--export_root", "exported", "--onnx_kwargs", '{"opset_version": 18}'])
    assert Path("exported/weights/openvino/model.xml").is_file()
    assert Path("exported/weights/openvino/model.bin").stat().st_size > 1_000_000


def test_new_grade_config_builds_its_data_and_model(world_in_cwd: Path) -> None:
    cli = _cli(["fit", "-c", str(CONFIGS / "new_grade.yaml"), *TINY], run=False)
    data = cli.datamodule
    data.setup()
    assert data.name == "galvanized" and data.real_defects_in_train == 0.0
    assert not data.train_data.has_anomalous, "no real defect of the new grade is used for training"
    assert data.val_data.has_anomalous and all("galvanized/test" not in p for p in data.val_data.samples.image_path
                                               if "/good/" not in p)
    assert data.test_data.has_anomalous and data.test_data.has_normal
    assert cli.model.hparams.image_size == 64

