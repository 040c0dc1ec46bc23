"""Volume inference: `segment_volume` and its parts (ROI, body crop, slice engine, OOD, clean-up)."""

from VQSegCore.compute import autocast_dtype as resolve_precision
from VQSegCore.compute import cpu_has_native_bf16
from VQSegCore.infer.engine import SliceEngine
from VQSegCore.infer.ood import CodeStatistics, OodScore, ood_score, reference_from_volumes
from VQSegCore.infer.roi import IndexBox, RoiRequest
from VQSegCore.infer.segment import SegmentRequest, SegmentResult, segment_volume

__all__ = [
    "IndexBox", "OodScore", "RoiRequest", "SegmentRequest", "SegmentResult", "SliceEngine", "cpu_has_native_bf16",
    "CodeStatistics", "ood_score", "reference_from_volumes", "resolve_precision", "segment_volume",
]
