"""The class table: one ordered list of segment classes shared by models, outputs and the pool.

Label value 0 is always background and is not listed. Segments are identified by `id`, never by
display name, so a user renaming a segment in Slicer cannot shift label values (docs/architecture.md §3.3).
Terminology strings use Slicer's `TerminologyEntry` format:
`context~category~type~typeModifier~anatomicContext~region~regionModifier`, codes as `scheme^value^meaning`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

_ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")

LUNG_TUMOUR_TERMINOLOGY = (
    "Segmentation category and type - DICOM master list"
    "~SCT^49755003^Morphologically Altered Structure"
    "~SCT^4147007^Mass"
    "~^^"
    "~Anatomic codes - DICOM master list"
    "~SCT^39607008^Lung"
    "~^^"
)


@dataclass(frozen=True)
class SegmentClass:
    value: int  # label value in label maps, 1..255
    id: str  # stable identifier (segment id in Slicer)
    name: str  # display name
    color: tuple[float, float, float]  # RGB in 0..1
    terminology: str = ""  # Slicer TerminologyEntry string

    def to_dict(self) -> dict:
        return {**asdict(self), "color": list(self.color)}

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentClass":
        return cls(
            value=int(data["value"]),
            id=str(data["id"]),
            name=str(data.get("name", data["id"])),
            color=tuple(float(c) for c in data.get("color", (1.0, 0.0, 0.0))),
            terminology=str(data.get("terminology", "")),
        )


@dataclass(frozen=True)
class ClassTable:
    classes: tuple[SegmentClass, ...]

    def __post_init__(self) -> None:
        _validate(self.classes)

    @property
    def values(self) -> list[int]:
        return [c.value for c in self.classes]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.classes]

    @property
    def max_value(self) -> int:
        return max(self.values)

    def by_value(self, value: int) -> SegmentClass:
        for segment_class in self.classes:
            if segment_class.value == value:
                return segment_class
        raise KeyError(f"no class with label value {value}; known values: {self.values}")

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self.classes]

    @classmethod
    def from_list(cls, items: list[dict]) -> "ClassTable":
        return cls(tuple(SegmentClass.from_dict(item) for item in items))


def _validate(classes: tuple[SegmentClass, ...]) -> None:
    if not classes:
        raise ValueError("a class table needs at least one class")
    values = [c.value for c in classes]
    ids = [c.id for c in classes]
    if len(set(values)) != len(values):
        raise ValueError(f"label values must be unique, got {values}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"class ids must be unique, got {ids}")
    for segment_class in classes:
        if not 1 <= segment_class.value <= 255:
            raise ValueError(f"class {segment_class.id!r}: label value {segment_class.value} is outside 1..255 (0 is background)")
        if not _ID_PATTERN.match(segment_class.id):
            raise ValueError(f"class id {segment_class.id!r} must start with a letter and hold only letters, digits, '_' or '-'")
        if len(segment_class.color) != 3 or not all(0.0 <= c <= 1.0 for c in segment_class.color):
            raise ValueError(f"class {segment_class.id!r}: colour must be three numbers in 0..1")


LUNG_TUMOUR = ClassTable(
    (
        SegmentClass(
            value=1,
            id="lung_tumour",
            name="Lung tumour",
            color=(0.86, 0.24, 0.24),
            terminology=LUNG_TUMOUR_TERMINOLOGY,
        ),
    )
)


def unexpected_values(array: np.ndarray, classes: ClassTable) -> list[int]:
    """Values other than background (0) and the class table's label values, sorted."""
    array = np.asarray(array)
    # One comparison pass per known value: np.unique or np.bincount over 78 M voxels take seconds.
    outside = array != 0
    for value in classes.values:
        outside &= array != value
    return [int(v) for v in np.unique(array[outside])]
