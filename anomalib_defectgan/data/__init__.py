"""Data: the manifest, the procedural steel world, dataset adapters and datamodules."""

from anomalib_defectgan.utils.lazy import lazy_getattr

_EXPORTS = {
    "read_manifest": "anomalib_defectgan.data.manifest",
    "write_manifest": "anomalib_defectgan.data.manifest",
    "validate_manifest": "anomalib_defectgan.data.manifest",
    "make_synthetic_steel": "anomalib_defectgan.data.synthetic_steel",
    "DefectDataModule": "anomalib_defectgan.data.datamodule",
    "DefectBatch": "anomalib_defectgan.data.batch",
    "GanBatch": "anomalib_defectgan.data.batch",
    "DefectManifest": "anomalib_defectgan.data.manifest_datamodule",
    "DefectAugmented": "anomalib_defectgan.data.augmented",
    "SyntheticDefectDataset": "anomalib_defectgan.data.synthetic_split",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
