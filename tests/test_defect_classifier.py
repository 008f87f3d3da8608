"""DefectClassifier: model shapes, loss, bad input, a 2-epoch fit through anomalib's Engine, reload."""

from __future__ import annotations

import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from anomalib.data import ImageBatch, InferenceBatch
from torchmetrics.functional.classification import binary_auroc

from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_classifier import (
    BACKBONES,
    DefectClassifier,
    DefectClassifierLoss,
    DefectClassifierModel,
)
from tests.defect_classifier_data import trained_classifier  # noqa: F401  (session fixture)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbones_give_score_and_map_at_input_size(backbone: str) -> None:
    model = DefectClassifierModel(backbone=backbone, decoder_channels=16)
    images = torch.rand(2, 3, 48, 40)
    model.train()
    score, map_logits = model(images)
    assert score.shape == (2,) and map_logits.shape == (2, 1, 48, 40)
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert isinstance(out, InferenceBatch)
    assert out.pred_score.shape == (2,) and out.anomaly_map.shape == (2, 1, 48, 40)
    assert float(out.pred_score.min()) >= 0 and float(out.pred_score.max()) <= 1
    assert float(out.anomaly_map.min()) >= 0 and float(out.anomaly_map.max()) <= 1


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(DefectGanError, match="unknown backbone 'vgg11'.*resnet18"):
        DefectClassifier(backbone="vgg11")


def test_pretrained_without_network_says_how_to_supply_weights(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # empty cache

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(DefectGanError) as err:
        DefectClassifier(backbone="resnet18", pretrained=True)
    message = str(err.value)
    assert "could not fetch" in message and "resnet18" in message
    assert "weights_path" in message and "TORCH_HOME" in message and "resnet18-" in message


def test_weights_path_loads_a_local_state_dict(tmp_path: Path) -> None:
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = DefectClassifierModel(backbone="resnet18", weights_path=str(path))
    assert torch.equal(model.encoder.stages[0][0].weight, source.conv1.weight)
    assert torch.equal(model.encoder.stages[2][0][0].conv1.weight, source.layer4[0].conv1.weight)


def test_bad_weights_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DefectGanError, match="broken.pth"):
        DefectClassifierModel(weights_path=str(path))
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), tmp_path / "other.pth")
    with pytest.raises(DefectGanError, match="other.pth: not a resnet18 state_dict"):
        DefectClassifierModel(backbone="resnet18", weights_path=str(tmp_path / "other.pth"))
    with pytest.raises(DefectGanError, match="missing.pth: weights file not found"):
        DefectClassifierModel(weights_path=str(tmp_path / "missing.pth"))


def test_map_loss_uses_only_images_with_known_masks() -> None:
    loss = DefectClassifierLoss()
    score = torch.zeros(3)
    maps = torch.randn(3, 1, 8, 8)
    labels = torch.tensor([0.0, 1.0, 1.0])
    masks = torch.zeros(3, 1, 8, 8)
    masks[1, :, 2:4, 2:4] = 1
    known = torch.tensor([True, True, False])
    total, parts = loss(score, maps, labels, masks, known)
    changed = maps.clone()
    changed[2] = 50.0  # the maskless defect's map must not matter
    total2, _ = loss(score, changed, labels, masks, known)
    assert torch.isclose(total, total2)
    assert set(parts) == {"score", "map_bce", "map_dice"}
    only_score, parts = DefectClassifierLoss(map_weight=0.0)(score, maps, labels, masks, known)
    assert set(parts) == {"score"} and torch.isclose(only_score, parts["score"])
    focal, _ = DefectClassifierLoss(score_loss="focal")(score, maps, labels, masks, known)
    assert torch.isfinite(focal) and not torch.isclose(focal, total)
    with pytest.raises(ValueError, match="score_loss"):
        DefectClassifierLoss(score_loss="hinge")


def test_defects_without_masks_train_image_level_with_one_warning() -> None:
    model = DefectClassifier(image_size=32, decoder_channels=16, visualizer=False)
    batch = ImageBatch(image=torch.rand(4, 3, 32, 32), gt_label=torch.tensor([False, True, True, False]),
                       gt_mask=torch.zeros(4, 32, 32, dtype=torch.bool))
    with pytest.warns(UserWarning, match="2 defect image.*no mask.*image-level"):
        out = model.training_step(batch, 0)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.model.cls_head.parameters())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="DefectClassifier")
        model.training_step(batch, 1)  # shown once only


def test_init_args_are_plain_data() -> None:
    model = DefectClassifier(image_size=[48, 64], visualizer=False)
    assert model.input_size == (48, 64)
    for value in model.hparams.values():
        assert value is None or isinstance(value, (bool, int, float, str, list))


def test_fit_two_epochs_learns_synthetic_defects(trained_classifier) -> None:  # noqa: F811
    model, datamodule = trained_classifier.model, trained_classifier.datamodule
    scores, labels = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            scores.append(model(batch.image).pred_score)
            raw = model.model(model.pre_processor(batch.image)).pred_score
            labels.append(batch.gt_label)
    labels = torch.cat(labels)
    assert labels.any() and (~labels).any(), "the synthetic test split must hold both classes"
    assert float(binary_auroc(torch.cat(scores), labels.int())) > 0.5
    assert raw.shape == scores[-1].shape


def test_checkpoint_reloads_with_weights_only(trained_classifier) -> None:  # noqa: F811
    ckpt = trained_classifier.ckpt
    assert ckpt.is_file()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["image_size"] == 64
    reloaded = DefectClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert reloaded.input_size == (64, 64)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = trained_classifier.model(images)
        after = reloaded(images)
    assert torch.allclose(before.pred_score, after.pred_score, atol=1e-6)
    assert torch.allclose(before.anomaly_map, after.anomaly_map, atol=1e-6)
