"""Renderers of the procedural steel world (numpy + OpenCV only).

``grades`` draws clean surfaces, ``defects`` draws grade-independent defect instances,
``render`` composites them and derives exact masks. The dataset writer is
:func:`anomalib_defectgan.data.synthetic_steel.make_synthetic_steel`.
"""

from anomalib_defectgan.data.steel_world.defects import DEFECTS
from anomalib_defectgan.data.steel_world.grades import GRADES
from anomalib_defectgan.data.steel_world.render import MASK_THRESHOLD, SteelSample, render_defect, render_good

__all__ = ["DEFECTS", "GRADES", "MASK_THRESHOLD", "SteelSample", "render_defect", "render_good"]
