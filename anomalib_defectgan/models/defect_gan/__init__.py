"""DefectGan: the layered defect-transfer swapping autoencoder (docs/design.md)."""

from anomalib_defectgan.models.defect_gan.inference import DefectGanGenerator, load_generator
from anomalib_defectgan.models.defect_gan.lightning_model import DefectGan
from anomalib_defectgan.models.defect_gan.torch_model import DefectCodes, DefectGanNet

__all__ = ["DefectCodes", "DefectGan", "DefectGanGenerator", "DefectGanNet", "load_generator"]
