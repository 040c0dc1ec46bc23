"""Volume and label-map I/O. SimpleITK is the single source of truth for geometry (docs/architecture.md §3.2)."""

from VQSegCore.io.geometry import Geometry, assert_same_geometry, ijk_to_lps
from VQSegCore.io.read import SUPPORTED_INPUTS, Volume, read_label_map, read_volume
from VQSegCore.io.write import LABEL_MAP_SUFFIXES, label_map_image, write_label_map

__all__ = [
    "Geometry",
    "assert_same_geometry",
    "ijk_to_lps",
    "SUPPORTED_INPUTS",
    "Volume",
    "read_volume",
    "read_label_map",
    "LABEL_MAP_SUFFIXES",
    "label_map_image",
    "write_label_map",
]
