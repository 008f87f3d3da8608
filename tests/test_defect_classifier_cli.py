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



def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_predict_from_a_checkpoint_keeps_visualizer_false(world_in_cwd: Path) -> None:
    """`anomalib predict --ckpt_path` with no config: the checkpoint's `visualizer: false` holds.

    The model is built from its defaults (visualizer on) and Lightning attaches its callbacks before
    it restores the checkpoint; anomalib then switches the visualizer off on the model but the
    callback stays attached and writes overlay images unless the model detaches it.
    """
    _cli(["train", "-c", str(CONFIGS / "synthetic_steel.yaml"), *TINY])
    (checkpoint,) = Path("results/DefectClassifier/cold_rolled").rglob("*.ckpt")
    images = Path("datasets/synthetic_steel/cold_rolled/test/scratches")
    before = _files(Path("results"))
    cli = _cli(["predict", "--model", "anomalib_defectgan.DefectClassifier", "--ckpt_path", str(checkpoint),
                "--data", str(images), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"],
               run=False)
    predictions = cli.engine.predict(model=cli.model, data_path=images, ckpt_path=checkpoint)
    assert sum(len(batch.pred_score) for batch in predictions) == len(list(images.glob("*.png")))
    batch = predictions[0]
    assert batch.pred_label is not None and batch.anomaly_map is not None, "the post-processor ran"
    assert float(batch.pred_score.min()) >= 0.0 and float(batch.pred_score.max()) <= 1.0
    written = {path for path in _files(Path("results")) - before if path.suffix in {".png", ".jpg"}}
    assert not written, f"visualizer: false was ignored, predict wrote {sorted(written)[:3]}"
    assert cli.model.visualizer is None
