"""DICOM writers: SEG lesion masks and a TID 1500 measurement report, with AIR provenance."""

import node.writers.iod_lookup  # noqa: F401  (highdicom's IOD look-up, answered once)
from node.writers.outputs import build_outputs
from node.writers.provenance import NODE_MANUFACTURER, output_uid
from node.writers.seg import build_segmentations
from node.writers.sr import build_measurement_report

__all__ = [
    "NODE_MANUFACTURER",
    "build_measurement_report",
    "build_outputs",
    "build_segmentations",
    "output_uid",
]
