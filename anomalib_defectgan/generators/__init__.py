"""Synthetic-defect generators with anomalib's anomaly-generator call contract.

``DefectTransferGenerator`` paints donor defects with the defect-transfer GAN;
``CutPasteGenerator`` pastes real donor pixels (the non-GAN baseline). Both take a defect bank
(:mod:`anomalib_defectgan.generators.defect_bank`).
"""

from anomalib_defectgan.utils.lazy import lazy_getattr

_EXPORTS = {
    "CutPasteGenerator": "anomalib_defectgan.generators.cut_paste",
    "DefectTransferGenerator": "anomalib_defectgan.generators.defect_transfer",
    "DefectBank": "anomalib_defectgan.generators.defect_bank",
    "DefectBankError": "anomalib_defectgan.generators.defect_bank",
}
__all__ = ["CutPasteGenerator", "DefectBank", "DefectBankError", "DefectTransferGenerator"]
__getattr__ = lazy_getattr(__name__, _EXPORTS)
