"""Detect truncated or corrupt NIfTI files, which ITK's NIfTI reader silently fills with zeros."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

_CHUNK = 1 << 22
_GZIP_MAGIC = b"\x1f\x8b"

# NIfTI datatype code → bytes per voxel (all components).
_DATATYPE_BYTES = {
    2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4,
    1024: 8, 1280: 8, 1536: 16, 1792: 16, 2048: 32, 2304: 4,
}


def nifti_problem(path: Path) -> str | None:
    """None when the file holds all the voxel data its header promises, else what is wrong."""
    compressed = path.name.lower().endswith(".gz")
    if compressed and not _starts_with(path, _GZIP_MAGIC):
        return None  # not gzip at all: ITK will say it is not a readable image
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
            expected = _expected_length(header)
            if expected is None:
                return None  # not a NIfTI-1/2 header we understand: let ITK judge it
            actual = len(header) + _drain(stream)
    except (EOFError, OSError, zlib.error) as error:
        return f"the compressed data is damaged ({error})"
    if actual < expected:
        return f"expected {expected} bytes of header and voxel data, found {actual}"
    return None


def nifti_header_problem(path: Path) -> str | None:
    """What ITK would silently paper over in a NIfTI header: a spatial axis of length 0 (read as one
    voxel) or a spacing (pixdim) of 0, negative zero or not a number (read as 1 mm). None if sound."""
    compressed = path.name.lower().endswith(".gz")
    if compressed and not _starts_with(path, _GZIP_MAGIC):
        return None
    try:
        with (gzip.open if compressed else open)(path, "rb") as stream:
            header = stream.read(540)
    except (EOFError, OSError, zlib.error):
        return None  # nifti_problem reports damaged data
    fields = _dims_and_pixdim(header)
    if fields is None:
        return None
    dims, pixdim = fields
    rank = min(int(dims[0]), 3)
    axes = "xyz"
    for axis in range(rank):
        if int(dims[axis + 1]) <= 0:
            return f"the header gives axis {axes[axis]} a length of {int(dims[axis + 1])} voxels (dim[{axis + 1}])"
    spacing = [float(pixdim[axis + 1]) for axis in range(rank)]
    if any(not math.isfinite(s) or s == 0 for s in spacing):
        shown = ", ".join(f"{s:g}" for s in spacing)
        return f"the header's voxel spacing (pixdim) is ({shown}): 0 or not a number, which readers silently turn into 1 mm"
    return None


def _dims_and_pixdim(header: bytes) -> tuple[tuple, tuple] | None:
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            return struct.unpack(endian + "8h", header[40:56]), struct.unpack(endian + "8f", header[76:108])
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            return struct.unpack(endian + "8q", header[16:80]), struct.unpack(endian + "8d", header[104:168])
    return None


def _expected_length(header: bytes) -> int | None:
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype = struct.unpack(endian + "h", header[70:72])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            return _payload(dims, datatype, max(offset, 352))
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            datatype = struct.unpack(endian + "h", header[12:14])[0]
            offset = struct.unpack(endian + "q", header[168:176])[0]
            return _payload(dims, datatype, max(offset, 544))
    return None


def _payload(dims: tuple[int, ...], datatype: int, offset: int) -> int | None:
    rank = dims[0]
    if not 1 <= rank <= 7 or datatype not in _DATATYPE_BYTES:
        return None
    voxels = 1
    for extent in dims[1 : rank + 1]:
        voxels *= max(int(extent), 1)
    return offset + voxels * _DATATYPE_BYTES[datatype]


def _drain(stream) -> int:
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
    return total


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic
