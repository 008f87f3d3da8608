"""The image threshold of DefectClassifier: anomalib's F1-adaptive threshold, centred in its gap.

anomalib's ``F1AdaptiveThreshold`` returns the validation score at which F1 is highest. Every
threshold between that score and the next lower validation score gives the same validation
predictions, and so the same F1; anomalib takes the top of that gap. When validation defects
separate from the good images (as synthetic defects do), the top of the gap is the lowest
synthetic defect's score, and a real defect fainter than every synthetic one is missed: on the
steel-world new-grade benchmark every error of the DefectGAN arms was a missed defect, none a
false alarm (docs/benchmarks.md, 2026-12-03). :class:`GapCentredF1Threshold` returns the middle
of the gap instead: the same validation F1, with the margin split evenly between the two classes.

The middle is taken in the classifier's own units. DefectClassifier's score is the sigmoid of a
logit; when the good images are scored more confidently than the defects (goods at 1e-5,
defects at 0.95), the middle of the probabilities still sits next to the defects, while the
middle of the logits (log-odds) splits the margin evenly. Scores outside [0, 1] (another model's) are
centred as they are.
"""

from __future__ import annotations

import torch
from anomalib.metrics import F1AdaptiveThreshold
from anomalib.post_processing import PostProcessor
from torchmetrics.utilities import dim_zero_cat


class GapCentredF1Threshold(F1AdaptiveThreshold):
    """``F1AdaptiveThreshold`` whose value is moved to the middle of the gap below it.

    The gap runs from the highest validation score below anomalib's threshold to that threshold;
    no validation score lies inside it, so the validation predictions and F1 are unchanged. Its
    middle is :func:`gap_middle` (log-odds for probabilities).
    Without a score below the threshold, with only one class, or in binned mode (``thresholds``
    given), the value is anomalib's.

    Example:
        >>> from anomalib.data import ImageBatch
        >>> metric = GapCentredF1Threshold(fields=["pred_score", "gt_label"])
        >>> metric.update(ImageBatch(image=torch.zeros(4, 3, 8, 8), pred_score=torch.tensor([0.1, 0.2, 0.8, 0.9]),
        ...                          gt_label=torch.tensor([0, 0, 1, 1])))
        >>> round(float(metric.compute()), 3)
        0.5
    """

    def compute(self) -> torch.Tensor:
        """The F1-maximising threshold, centred between it and the next lower validation score."""
        value = super().compute()
        if self.thresholds is not None or not (self._has_anomalous_samples() and self._has_normal_samples()):
            return value
        scores = dim_zero_cat(self.preds).flatten()
        below = scores[scores < value]
        if below.numel() == 0:
            return value
        return gap_middle(below.max(), value)


def gap_middle(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The middle of ``[low, high]``: in log-odds for probabilities, else arithmetic.

    Args:
        low: The highest validation score below the threshold.
        high: anomalib's F1 threshold.

    Returns:
        The threshold, between ``low`` and ``high``.

    Example:
        >>> round(float(gap_middle(torch.tensor(0.01), torch.tensor(0.99))), 3)
        0.5
        >>> round(float(gap_middle(torch.tensor(1e-4), torch.tensor(0.9))), 4)
        0.0291
    """
    if not (float(low) >= 0.0 and float(high) <= 1.0):
        return (low + high) / 2
    eps = torch.finfo(torch.float32).eps
    low_logit, high_logit = torch.logit(low.double(), eps=eps), torch.logit(high.double(), eps=eps)
    return torch.sigmoid((low_logit + high_logit) / 2).to(high.dtype).clamp(low, high)


class DefectPostProcessor(PostProcessor):
    """anomalib's ``PostProcessor`` with :class:`GapCentredF1Threshold` as the image threshold.

    Everything else (normalisation, the pixel threshold, sensitivities, export) is anomalib's, with
    one fix: anomalib 2.7 labels scores at ``1 - sensitivity`` (0.5) even when normalisation is off,
    so with ``enable_normalization=False`` the fitted thresholds were never applied to the raw
    scores. Here, without normalisation, ``pred_label`` and ``pred_mask`` use the fitted image and
    pixel thresholds (while none is fitted, anomalib's 0.5 rule).

    Args:
        **kwargs: ``PostProcessor`` arguments (e.g. ``enable_normalization=False``).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._image_threshold_metric = GapCentredF1Threshold(fields=["pred_score", "gt_label"], strict=False)

    @property
    def normalized_image_threshold(self) -> torch.Tensor:
        """The image threshold in the units of the post-processed score (raw without normalisation)."""
        return self._threshold_for_labels(self.image_threshold, super().normalized_image_threshold)

    @property
    def normalized_pixel_threshold(self) -> torch.Tensor:
        """The pixel threshold in the units of the post-processed anomaly map."""
        return self._threshold_for_labels(self.pixel_threshold, super().normalized_pixel_threshold)

    def _threshold_for_labels(self, fitted: torch.Tensor, normalized: torch.Tensor) -> torch.Tensor:
        if self.enable_normalization:
            return normalized
        return torch.where(torch.isnan(fitted), normalized.to(fitted), fitted)
