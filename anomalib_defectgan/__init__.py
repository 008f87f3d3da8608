"""anomalib-defectgan: defect-transfer GAN and supervised defect inspection for anomalib.

Public API (imported lazily, so ``import anomalib_defectgan`` is cheap)::

    from anomalib_defectgan import DefectClassifier, DefectGan, DefectTransferGenerator
    from anomalib_defectgan import CutPasteGenerator, DefectAugmented, DefectDataModule
"""

from anomalib_defectgan.utils.lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "DefectClassifier": "anomalib_defectgan.models.defect_classifier",
    "DefectGan": "anomalib_defectgan.models.defect_gan",
    "load_generator": "anomalib_defectgan.models.defect_gan",
    "DefectTransferGenerator": "anomalib_defectgan.generators",
    "CutPasteGenerator": "anomalib_defectgan.generators",
    "DefectAugmented": "anomalib_defectgan.data",
    "DefectManifest": "anomalib_defectgan.data",
    "DefectDataModule": "anomalib_defectgan.data",
    "make_synthetic_steel": "anomalib_defectgan.data",
    "read_manifest": "anomalib_defectgan.data",
    "write_manifest": "anomalib_defectgan.data",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
