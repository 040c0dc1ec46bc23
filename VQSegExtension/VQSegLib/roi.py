"""A markups ROI as the `--roi-ras` box of `vqseg segment`: two opposite corners in world RAS mm.

The CLI takes an axis-aligned box. vtkMRMLMarkupsROINode.GetRASBounds() gives the world
axis-aligned bounding box of the ROI after its parent transforms (Libs/MRML/Core/
vtkMRMLMarkupsROINode.cxx). For a rotated ROI that box is larger than the ROI, so the caller is
told, and says so to the user. No slicer import: tests pass a stand-in node.
"""

from typing import List, NamedTuple, Sequence

# Direction cosines below this count as zero (GetObjectToNodeMatrixRotated uses 1e-3 as well).
ROTATION_TOLERANCE = 1e-3


class RoiBox(NamedTuple):
    corners: List[float]  # x0 y0 z0 x1 y1 z1 in RAS mm, x0 <= x1 and so on
    rotated: bool  # True: the box is the rotated ROI's world bounding box (it holds more than the ROI)


def cornersFromBounds(bounds: Sequence[float]) -> List[float]:
    """VTK bounds (xmin, xmax, ymin, ymax, zmin, zmax) -> corners (x0, y0, z0, x1, y1, z1)."""
    if len(bounds) != 6:
        raise ValueError(f"bounds need 6 numbers, got {len(bounds)}")
    low = [float(bounds[0]), float(bounds[2]), float(bounds[4])]
    high = [float(bounds[1]), float(bounds[3]), float(bounds[5])]
    if any(h - l <= 0 for l, h in zip(low, high)):
        raise ValueError("the ROI has no volume: place it (or give it a size) before segmenting")
    return low + high


def isAxisAligned(rows: Sequence[Sequence[float]], tolerance: float = ROTATION_TOLERANCE) -> bool:
    """Whether a 3x3 linear part (rows of a 4x4 matrix) maps each axis onto one world axis (flips allowed)."""
    for column in range(3):
        values = [abs(float(rows[row][column])) for row in range(3)]
        length = max(values)
        if length <= 0:
            return False
        if sum(1 for value in values if value / length > tolerance) != 1:
            return False
    return True


def matrixRows(vtkMatrix) -> List[List[float]]:
    """The upper-left 3x3 of a vtkMatrix4x4 as nested lists."""
    return [[vtkMatrix.GetElement(row, column) for column in range(3)] for row in range(3)]


def roiBox(roiNode) -> RoiBox:
    """The world RAS box to segment in, from a vtkMRMLMarkupsROINode."""
    bounds = [0.0] * 6
    roiNode.GetRASBounds(bounds)  # world coordinates: parent transforms applied
    rotated = not isAxisAligned(matrixRows(roiNode.GetObjectToWorldMatrix()))
    return RoiBox(cornersFromBounds(bounds), rotated)


# A new ROI created from the Region selector: about a large nodule or a small tumour with margin.
NEW_ROI_SIZE_MM = (60.0, 60.0, 60.0)


def volumeCenterRas(volumeNode) -> List[float]:
    """The centre of a volume node's world (RAS) bounding box."""
    bounds = [0.0] * 6
    volumeNode.GetRASBounds(bounds)
    return [(bounds[2 * axis] + bounds[2 * axis + 1]) / 2.0 for axis in range(3)]
