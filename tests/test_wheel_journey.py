"""A plant's first hour from a wheel: install it, copy the configs, train, export, infer, outside the checkout.

The wheel is built from this checkout and installed with ``--no-deps`` into a fresh venv that
sees this interpreter's packages (anomalib, torch, OpenVINO) but not the checkout: every command
runs from a temporary folder, and the test first proves the venv imports the wheel's copy of
the package, not the editable checkout. Each step is the command a user types (README, docs/cli.md,
docs/deployment.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
              "--model.init_args.image_size", "64",
              "--data.init_args.datamodule.init_args.train_batch_size", "4",
              "--data.init_args.datamodule.init_args.eval_batch_size", "8"]
INFER = """
import sys
from anomalib.deploy import OpenVINOInferencer
inferencer = OpenVINOInferencer(sys.argv[1], device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
result = inferencer.predict(sys.argv[2])
score = float(result.pred_score.reshape(-1)[0])
assert 0.0 <= score <= 1.0, score
assert tuple(result.anomaly_map.shape[-2:]) == (64, 64), result.anomaly_map.shape
print("score", score, "label", bool(result.pred_label.reshape(-1)[0]))
"""


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_wheel_install_then_configs_train_export_infer_from_a_plain_folder(tmp_path: Path) -> None:
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "plant"
    work.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
           "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO),
          "-w", str(wheels)], cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("anomalib_defectgan-*.whl")
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    python, scripts = venv / "bin" / "python", venv / "bin"
    # --force-reinstall: pip sees the checkout's editable install through the system site and would skip
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--force-reinstall",
          "--no-index", str(wheel)], cwd=tmp_path, env=env)
    env["PATH"] = f"{scripts}{os.pathsep}{env['PATH']}"

    where = _run([str(python), "-c", "import anomalib_defectgan; print(anomalib_defectgan.__file__)"], work, env)
    assert Path(where.strip()).resolve().is_relative_to(venv.resolve()), f"imports {where.strip()}, not the wheel"

    assert "generate" in _run([str(scripts / "defectgan"), "--help"], work, env)
    listing = _run([str(scripts / "defectgan"), "configs"], work, env)
    assert "classifier/synthetic_steel.yaml" in listing and "defect_gan/cpu.yaml" in listing
    _run([str(scripts / "defectgan"), "configs", "--copy", "configs"], work, env)
    config = work / "configs" / "classifier" / "synthetic_steel.yaml"
    assert config.read_bytes() == (REPO / "configs" / "classifier" / "synthetic_steel.yaml").read_bytes()

    _run([str(scripts / "defectgan"), "make-dataset", "--size", "64", "--per-class", "2", "--good-per-grade", "12",
          "--no-progress"], work, env)
    anomalib = [str(python), "-c", "import sys; from anomalib.cli.cli import main; sys.argv[0] = 'anomalib'; main()"]
    _run([*anomalib, "train", "-c", "configs/classifier/synthetic_steel.yaml", *TINY_TRAIN], work, env)
    (checkpoint,) = (work / "results" / "DefectClassifier" / "cold_rolled").rglob("*.ckpt")
    _run([*anomalib, "export", "--model", "anomalib_defectgan.DefectClassifier", "--ckpt_path", str(checkpoint),
          "--export_type", "openvino", "--export_root", "exported", "--onnx_kwargs", '{"opset_version": 18}'],
         work, env)
    model = work / "exported" / "weights" / "openvino" / "model.xml"
    assert model.is_file()
    image = next(iter(sorted((work / "datasets" / "synthetic_steel" / "cold_rolled" / "test" / "scratches").glob("*.png"))))
    assert "score" in _run([str(python), "-c", INFER, str(model), str(image)], work, env)
