"""DefectClassifier: supervised defect detection (image score + anomaly map) for anomalib."""

from .lightning_model import DefectClassifier
from .loss import DefectClassifierLoss
from .threshold import DefectPostProcessor, GapCentredF1Threshold
from .torch_model import BACKBONES, DefectClassifierModel

__all__ = [
    "BACKBONES",
    "DefectClassifier",
    "DefectClassifierLoss",
    "DefectClassifierModel",
    "DefectPostProcessor",
    "GapCentredF1Threshold",
]
