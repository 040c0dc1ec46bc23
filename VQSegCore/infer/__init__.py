"""Volume inference: `segment_volume` and its parts (ROI, body crop, slice engine, OOD, clean-up)."""

from VQSegCore.infer.engine import SliceEngine, cpu_has_native_bf16, resolve_precision
from VQSegCore.infer.ood import OodScore, ood_score, reference_from_distances
from VQSegCore.infer.roi import IndexBox, RoiRequest
from VQSegCore.infer.segment import SegmentRequest, SegmentResult, segment_volume

__all__ = [
    "IndexBox", "OodScore", "RoiRequest", "SegmentRequest", "SegmentResult", "SliceEngine", "cpu_has_native_bf16",
    "ood_score", "reference_from_distances", "resolve_precision", "segment_volume",
]
