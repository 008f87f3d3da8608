"""DefectClassifier's image threshold: anomalib's F1-adaptive threshold, centred in its validation gap."""

from __future__ import annotations

import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.metrics import F1AdaptiveThreshold

from anomalib_defectgan.models.defect_classifier import (
    DefectClassifier,
    DefectPostProcessor,
    GapCentredF1Threshold,
)


def _batch(scores: list[float] | torch.Tensor, labels: list[int] | torch.Tensor) -> ImageBatch:
    scores = torch.as_tensor(scores, dtype=torch.float32)
    return ImageBatch(image=torch.zeros(len(scores), 3, 8, 8), pred_score=scores,
                      gt_label=torch.as_tensor(labels, dtype=torch.long))


def _thresholds(scores, labels) -> tuple[float, float]:
    ours, theirs = (cls(fields=["pred_score", "gt_label"]) for cls in (GapCentredF1Threshold, F1AdaptiveThreshold))
    for metric in (ours, theirs):
        metric.update(_batch(scores, labels))
    return float(ours.compute()), float(theirs.compute())


def test_separated_validation_gets_the_middle_of_the_gap() -> None:
    ours, theirs = _thresholds([0.05, 0.1, 0.3, 0.9, 0.95, 0.99], [0, 0, 0, 1, 1, 1])
    assert theirs == pytest.approx(0.9), "anomalib takes the lowest validation defect"
    middle_logit = (torch.logit(torch.tensor(0.3)) + torch.logit(torch.tensor(0.9))) / 2
    assert ours == pytest.approx(float(torch.sigmoid(middle_logit)), abs=1e-6)
    faint_real_defect = 0.7
    assert faint_real_defect >= ours and faint_real_defect < theirs


def test_a_confident_classifier_is_centred_in_log_odds_not_probability() -> None:
    goods, synthetic_defects = [1e-5, 3e-5, 5e-5], [0.95, 0.99, 0.999]
    ours, theirs = _thresholds(goods + synthetic_defects, [0, 0, 0, 1, 1, 1])
    assert theirs == pytest.approx(0.95)
    assert 1e-3 < ours < 0.05, "the probability midpoint (~0.475) would sit next to the defects"
    assert (ours <= 0.2) and (max(goods) < ours)


def test_scores_that_are_not_probabilities_are_centred_arithmetically() -> None:
    ours, theirs = _thresholds([-3.0, -2.0, 4.0, 6.0], [0, 0, 1, 1])
    assert theirs == pytest.approx(4.0)
    assert ours == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_overlapping_validation_keeps_anomalibs_predictions_and_f1(seed: int) -> None:
    rng = torch.Generator().manual_seed(seed)
    labels = (torch.rand(60, generator=rng) < 0.4).long()
    scores = torch.rand(60, generator=rng) * 0.6 + 0.35 * labels
    ours, theirs = _thresholds(scores, labels)
    assert ours <= theirs
    assert torch.equal(scores >= ours, scores >= theirs), "no validation score lies in the gap"


def test_one_class_falls_back_to_anomalib() -> None:
    ours, theirs = _thresholds([0.2, 0.4, 0.6], [0, 0, 0])
    assert ours == theirs == pytest.approx(0.6)


def test_the_post_processor_fits_the_centred_threshold_on_validation() -> None:
    post = DefectPostProcessor(enable_normalization=False)
    post.on_validation_batch_end(None, None, _batch([0.1, 0.2], [0, 0]))
    post.on_validation_batch_end(None, None, _batch([0.8, 0.9], [1, 1]))
    post.on_validation_epoch_end(None, None)
    assert float(post.image_threshold) == pytest.approx(0.5)
    assert isinstance(DefectClassifier().post_processor, DefectPostProcessor)
