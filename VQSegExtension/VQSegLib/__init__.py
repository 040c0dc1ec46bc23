"""Slicer-side helpers of the VQSeg module (no Qt at import time)."""
