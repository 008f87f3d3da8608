"""DefectClassifier's image threshold: anomalib's F1-adaptive threshold, centred in its validation gap."""

from __future__ import annotations

import pytest
import torch
from anomalib.data import ImageBatch, InferenceBatch
from anomalib.metrics import F1AdaptiveThreshold
from anomalib.post_processing import PostProcessor

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


def _fitted(post: PostProcessor) -> PostProcessor:
    """Fit ``post`` on a confident validation set: goods near 1e-5, synthetic defects near 1."""
    for scores, label in (([1e-5, 3e-5], 0), ([0.99, 0.999], 1)):
        batch = _batch(scores, [label] * 2)
        batch.anomaly_map = torch.full((2, 8, 8), scores[0])
        batch.gt_mask = torch.full((2, 8, 8), bool(label))
        post.on_validation_batch_end(None, None, batch)
    post.on_validation_epoch_end(None, None)
    return post


def test_without_normalisation_labels_use_the_fitted_threshold_not_a_fixed_half() -> None:
    faint_real_defect = InferenceBatch(pred_score=torch.tensor([0.1, 2e-5]), anomaly_map=torch.full((2, 1, 8, 8), 0.7))
    ours = _fitted(DefectPostProcessor(enable_normalization=False))
    assert float(ours.image_threshold) < 0.1
    assert float(ours.pixel_threshold) == pytest.approx(0.99), "the pixel threshold is anomalib's F1 value"
    assert ours(faint_real_defect).pred_label.tolist() == [True, False]
    assert not bool(ours(faint_real_defect).pred_mask.any()), "pixel labels use the fitted pixel threshold too"
    anomalibs = _fitted(PostProcessor(enable_normalization=False))
    assert anomalibs(faint_real_defect).pred_label.tolist() == [False, False], "anomalib 2.7 labels raw scores at 0.5"
    assert bool(anomalibs(faint_real_defect).pred_mask.all())


def test_with_normalisation_labels_are_anomalibs_rule_on_the_normalised_score() -> None:
    ours = _fitted(DefectPostProcessor())
    assert float(ours.normalized_image_threshold) == pytest.approx(0.5)
    batch = InferenceBatch(pred_score=torch.tensor([0.1, 2e-5]), anomaly_map=torch.full((2, 1, 8, 8), 0.1))
    assert ours(batch).pred_label.tolist() == [True, False]


def test_an_unfitted_post_processor_without_normalisation_keeps_the_half_rule() -> None:
    post = DefectPostProcessor(enable_normalization=False)
    labels = post(InferenceBatch(pred_score=torch.tensor([0.4, 0.6]))).pred_label
    assert labels.tolist() == [False, True]
