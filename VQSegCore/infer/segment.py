"""Segment one volume: region → slabs → model grid → slice engine → back onto the input grid.

    request = SegmentRequest(roi=RoiRequest("ras", (..), (..)), uncertainty="entropy")
    result = segment_volume(model, card, image, request)
    result.labels            # sitk label map: the input's size, spacing, origin and direction
    result.report()          # volumes per class, OOD score, timings per stage

The region is the ROI when one is given, else (for CT) the lungs' or the body's bounding box
(body.py); voxels outside it are background (uncertainty 0). For axis-aligned volumes whose slice
axis is the index k axis the region is processed in slabs of `slab_slices` slices (plus the 2.5D context on each side), so
memory is bounded by a slab whatever the number of slices; oblique or permuted volumes are
processed whole. Each slice goes through the model in square windows of the model's training crop
(`request.window` overrides it; 0 = whole slices), blended with Gaussian weights (engine.py). Before
any work, the memory the run needs is estimated; beyond the limit the run stops with an InputError
that says how to get under it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from VQSegCore.compute import resolve_device
from VQSegCore.errors import InputError
from VQSegCore.infer.body import crop_box, lung_field, lung_mask, lung_plane_boxes
from VQSegCore.infer.engine import SliceEngine, resolve_window
from VQSegCore.infer.ood import CodeStatistics, OodScore, ood_score
from VQSegCore.infer.postprocess import keep_components_touching, remove_small_components
from VQSegCore.infer.roi import IndexBox, RoiRequest
from VQSegCore.io.geometry import Geometry
from VQSegCore.preprocess import (AXIS_TOLERANCE, intensity_transform, label_to_model_grid, model_grid_size, probabilities_to_label,
                                  scalar_to_original, to_model_grid)

DEFAULT_SLAB_SLICES = 48
DEFAULT_MEMORY_LIMIT_GB = 8.0
# Bytes of working memory per model-grid voxel of a slab: the float32 input, C float32 probabilities,
# the resampling scratch and torch's activations for one batch are bounded by this times C. With
# windows, a forward pass holds as many window pixels as a batch of whole slices (engine.py), plus
# the blended logits of the batch's slices.
SLAB_BYTES_PER_VOXEL_PER_CLASS = 24


@dataclass
class SegmentRequest:
    roi: RoiRequest | None = None
    crop: str = "auto"  # CT only, when no ROI is given: "auto" (lungs, else body) | "lungs" | "body" | "none"
    uncertainty: str | None = None  # None | "entropy" | "samples"
    probabilities: bool = False
    min_component_ml: float = 0.0
    # CT without an ROI: drop findings that touch no lung (the lungs' bounding box also holds the
    # heart, the mediastinum, the spine and the upper abdomen, where a lung-lesion model has no business).
    lungs_only: bool = True
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None  # slices per forward pass; None: 2 on CPU (cache-friendly, measured), 16 on GPU
    window: int | None = None  # side of the square inference windows; None: the model's own (its training crop); 0: whole slices
    slab_slices: int = DEFAULT_SLAB_SLICES
    memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB


@dataclass
class SegmentResult:
    labels: sitk.Image
    probabilities: sitk.Image | None
    uncertainty: sitk.Image | None
    region: IndexBox
    region_source: str  # "roi" | "lungs" | "body" | "whole image"
    ood: OodScore | None
    classes: list[dict]  # per class: id, value, voxels, ml
    timings_s: dict[str, float]
    precision: str
    device: str
    slices_per_s: float
    codes: CodeStatistics | None = None  # code usage of the processed tokens (the OOD score's input)
    notes: list[str] = field(default_factory=list)
    removed: dict = field(default_factory=dict)  # clean-up steps that ran: {"outside_lungs" | "small": {"findings": n, "ml": v}}
    warnings: list[str] = field(default_factory=list)  # things that may make the result wrong (e.g. NaN voxels)

    def report(self) -> dict:
        return {
            "classes": self.classes, "region": {"source": self.region_source, **self.region.to_dict()},
            "ood": self.ood.to_dict() if self.ood else None, "timings_s": self.timings_s,
            "precision": self.precision, "device": self.device, "slices_per_s": round(self.slices_per_s, 2), "notes": self.notes,
            "removed": self.removed,
            "warnings": self.warnings,
        }


class _Stopwatch:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def add(self, stage: str, started: float) -> None:
        self.totals[stage] = self.totals.get(stage, 0.0) + time.perf_counter() - started


def segment_volume(model, card: dict, image: sitk.Image, request: SegmentRequest, *, progress=None, cancel=None) -> SegmentResult:
    config = model.config
    check_model_fits(config, image)
    image, warnings = _without_nan(image)
    try:
        window = resolve_window(request.window, config)
    except ValueError as problem:
        raise InputError(str(problem), f"use --window 0 or a multiple of {config.size_multiple}") from problem
    watch = _Stopwatch()
    notes: list[str] = []
    device = resolve_device(request.device)

    started = time.perf_counter()
    wants_lungs = request.roi is None and config.preprocessing.modality == "ct" and request.crop in ("auto", "lungs")
    lungs = lung_mask(image) if wants_lungs else None  # found once, used for the box and the slab fields
    region, source = _region(image, request, config.preprocessing.modality, lungs)
    slab_ranges = _slabs(image, region, request.slab_slices)
    _check_memory(image, region, slab_ranges, config, request)
    # Lungs narrow towards apex and base: each slab gets the in-plane box of the lungs near it.
    plane_boxes = lung_plane_boxes(image, region, slab_ranges, lungs=lungs) if source == "lungs" and len(slab_ranges) > 1 else None
    watch.add("crop", started)

    try:
        batch_size = request.batch_size or (16 if device.type == "cuda" else 2)
        engine = SliceEngine(model, device, precision=request.precision, batch_size=batch_size, window=window)
    except ValueError as problem:
        raise InputError(str(problem), "use --precision auto") from problem
    sub = region.extract(image)
    # From the whole image, as in training: an ROI must not change an MRI's percentiles and z-score.
    transform = intensity_transform(sitk.GetArrayViewFromImage(image), config.preprocessing)
    label_values = (0, *config.classes.values)
    region_labels = np.zeros(sub.GetSize()[::-1], dtype=np.uint8 if max(label_values) <= 255 else np.uint16)
    region_uncertainty = np.zeros(region_labels.shape, dtype=np.float32) if request.uncertainty else None
    region_probabilities = np.zeros((config.num_classes - 1, *region_labels.shape), dtype=np.float32) if request.probabilities else None
    context = config.preprocessing.context_slices
    codes, slices_done = CodeStatistics.empty(model.quantizer.codebook_size), 0
    # Findings that touch no lung are dropped below; with windows, those far from the lungs are not even computed.
    skip_outside_lungs = source == "lungs" and request.lungs_only and lungs is not None and bool(window)
    total_slices = region.size[2]
    for slab_index, (keep_start, keep_stop) in enumerate(slab_ranges):
        read_start, read_stop = max(0, keep_start - context), min(sub.GetSize()[2], keep_stop + context)
        i0, j0, i1, j1 = 0, 0, sub.GetSize()[0], sub.GetSize()[1]
        if plane_boxes is not None:
            (i0, j0, _), (i1, j1, _) = plane_boxes[slab_index].start, plane_boxes[slab_index].stop
        whole_slab = (i0, j0, read_start, i1, j1, read_stop) == (0, 0, 0, *sub.GetSize())
        slab = sub if whole_slab else sub[i0:i1, j0:j1, read_start:read_stop]
        plane = (slice(j0, j1), slice(i0, i1))
        started = time.perf_counter()
        grid = to_model_grid(slab, config.preprocessing, transform=transform)
        field = None
        if skip_outside_lungs:  # windows that hold no lung are not computed (engine.py)
            slab_box = IndexBox((region.start[0] + i0, region.start[1] + j0, region.start[2] + read_start),
                                (region.start[0] + i1, region.start[1] + j1, region.start[2] + read_stop))
            field_image = sitk.GetImageFromArray(lung_field(lungs, slab_box, image.GetSpacing()).astype(np.uint8))
            field_image.CopyInformation(slab)
            field = label_to_model_grid(field_image, grid) > 0
        watch.add("preprocess", started)

        started = time.perf_counter()
        done_before = slices_done
        out = engine.run(grid.array, background=grid.background_value, uncertainty=request.uncertainty, cancel=cancel, field=field,
                         progress=(lambda d, t: progress("segment", min(total_slices, done_before + d), total_slices)) if progress else None)
        watch.add("infer", started)
        codes.merge(out.codes)

        started = time.perf_counter()
        keep = slice(keep_start - read_start, keep_stop - read_start)
        labels = sitk.GetArrayFromImage(probabilities_to_label(out.probabilities, grid, labels=label_values, sums_to_one=True))
        region_labels[(slice(keep_start, keep_stop), *plane)] = labels[keep]
        if region_uncertainty is not None:
            region_uncertainty[(slice(keep_start, keep_stop), *plane)] = scalar_to_original(out.uncertainty, grid)[keep]
        if region_probabilities is not None:
            for c in range(1, config.num_classes):
                region_probabilities[(c - 1, slice(keep_start, keep_stop), *plane)] = scalar_to_original(out.probabilities[c], grid)[keep]
        watch.add("resample_back", started)
        slices_done += keep_stop - keep_start
        del out, grid

    started = time.perf_counter()
    spacing_zyx = tuple(reversed(image.GetSpacing()))
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    if source != "roi" and config.preprocessing.modality == "ct":
        warnings.append(f"made without an ROI: the model searched {_REGION_WORDS[source]}; it was trained on regions around "
                        "lesions and can mark other dense structures, so check every finding or place an ROI around the lesion")
    cleanup = {}
    if source == "lungs" and request.lungs_only and lungs is not None:
        before = np.count_nonzero(region_labels)
        removed = 0
        if before:  # only the box around the findings (plus one voxel: 26-connectivity) is labelled and filtered
            found = np.nonzero(region_labels)
            lo = [max(0, int(a.min()) - 1) for a in found]
            hi = [min(n, int(a.max()) + 2) for a, n in zip(found, region_labels.shape)]
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            sub = IndexBox(tuple(region.start[i] + lo[2 - i] for i in range(3)), tuple(region.start[i] + hi[2 - i] for i in range(3)))
            region_labels[box], removed = keep_components_touching(region_labels[box], lung_field(lungs, sub, image.GetSpacing()),
                                                                    config.classes.values)
        dropped_ml = (before - np.count_nonzero(region_labels)) * voxel_ml
        cleanup["outside_lungs"] = {"findings": removed, "ml": round(dropped_ml, 3)}
        if removed:
            notes.append(f"removed {cleanup['outside_lungs']['findings']} finding(s), {dropped_ml:.2f} mL, that touch no lung "
                         "(the command line's --keep-outside-lungs keeps them)")
    if request.min_component_ml > 0:
        before = np.count_nonzero(region_labels)
        region_labels, removed = remove_small_components(region_labels, spacing_zyx, request.min_component_ml, config.classes.values)
        cleanup["small"] = {"findings": sum(removed.values()), "ml": round((before - np.count_nonzero(region_labels)) * voxel_ml, 3)}
        if any(removed.values()):
            notes.append(f"removed components smaller than {request.min_component_ml} mL: "
                         + ", ".join(f"{config.classes.by_value(v).id} {n}" for v, n in removed.items() if n))
    labels_image = _paste(region_labels, region, image)
    uncertainty_image = _paste(region_uncertainty, region, image) if region_uncertainty is not None else None
    probabilities_image = None
    if region_probabilities is not None:
        channels = [_paste(region_probabilities[c], region, image) for c in range(region_probabilities.shape[0])]
        probabilities_image = channels[0] if len(channels) == 1 else sitk.Compose(channels)
    watch.add("postprocess", started)

    counts = np.bincount(region_labels.ravel(), minlength=max(label_values) + 1)
    classes = [{"id": c.id, "name": c.name, "value": c.value, "voxels": int(counts[c.value]),
                "ml": round(float(counts[c.value]) * voxel_ml, 3)} for c in config.classes.classes]
    ood = ood_score(codes, card.get("ood_reference"))
    if ood is None:
        notes.append("the model card holds no OOD reference: no out-of-distribution check")
    elif ood.warning:
        notes.append(ood.warning)
    infer_s = watch.totals.get("infer", 0.0)
    return SegmentResult(
        labels=labels_image, probabilities=probabilities_image, uncertainty=uncertainty_image, region=region,
        region_source=source, ood=ood, classes=classes, timings_s={k: round(v, 3) for k, v in watch.totals.items()},
        precision=engine.precision_name, device=str(device), slices_per_s=total_slices / infer_s if infer_s else 0.0, codes=codes,
        notes=notes, warnings=warnings, removed=cleanup,
    )


_REGION_WORDS = {"lungs": "the lungs' bounding box", "body": "the body's bounding box", "whole image": "the whole image"}


def _without_nan(image: sitk.Image) -> tuple[sitk.Image, list[str]]:
    """NaN voxels (a broken export) would make every slice they touch NaN through the network; they
    become the image's lowest finite value (air, background) and the result says how many there were."""
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return image, []
    array = sitk.GetArrayViewFromImage(image)
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if not count:
        return image, []
    lowest = float(np.min(array, where=~bad, initial=np.inf))
    fill = lowest if np.isfinite(lowest) else 0.0
    filled = array.copy()  # one copy, filled in place
    filled[bad] = fill
    cleaned = sitk.GetImageFromArray(filled)
    cleaned.CopyInformation(image)
    slices = int(bad.reshape(bad.shape[0], -1).any(axis=1).sum())
    return cleaned, [f"{count} voxels in {slices} slice(s) are not a number (NaN or infinite): they were segmented as "
                     f"the image's lowest value ({fill:g}); check the export of this image"]


def check_model_fits(config, image: sitk.Image) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the model takes a 3D scalar volume; this image is {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} components per voxel", "give a single 3D grey-level volume")
    if config.in_channels != 2 * config.preprocessing.context_slices + 1:
        raise InputError(f"the model takes {config.in_channels} input channels but its preprocessing makes "
                         f"{2 * config.preprocessing.context_slices + 1}", "the model card is inconsistent; use another model")
    if config.num_classes != len(config.classes.classes) + 1:
        raise InputError("the model's output channels do not match its class table", "the model card is inconsistent; use another model")


def _region(image: sitk.Image, request: SegmentRequest, modality: str, lungs) -> tuple[IndexBox, str]:
    if request.roi is not None:
        return IndexBox.from_request(image, request.roi), "roi"
    if modality == "ct" and request.crop != "none":
        return crop_box(image, request.crop, lungs=lungs) if request.crop in ("auto", "lungs") else crop_box(image, request.crop)
    return IndexBox.whole(image), "whole image"


def _slabs(image: sitk.Image, region: IndexBox, slab_slices: int) -> list[tuple[int, int]]:
    """Ranges of the region's k axis to process one at a time (one range for oblique/permuted volumes)."""
    depth = region.size[2]
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    k_is_slice_axis = abs(abs(direction[2, 2]) - 1.0) <= AXIS_TOLERANCE
    if not k_is_slice_axis or slab_slices <= 0 or depth <= slab_slices:
        return [(0, depth)]
    return [(start, min(depth, start + slab_slices)) for start in range(0, depth, slab_slices)]


def _check_memory(image: sitk.Image, region: IndexBox, slabs: list[tuple[int, int]], config, request: SegmentRequest) -> None:
    num_classes = config.num_classes
    largest = max(stop - start for start, stop in slabs) + 2 * config.preprocessing.context_slices
    slab = Geometry(size=(region.size[0], region.size[1], min(largest, region.size[2])), spacing=tuple(image.GetSpacing()),
                    origin=(0.0, 0.0, 0.0), direction=tuple(image.GetDirection()))
    # Resampling to the model's spacing can multiply the voxels (coarse input) or divide them; the
    # slab's own voxels are held as float32 meanwhile, so never count fewer than those.
    slab_voxels = max(int(np.prod(model_grid_size(slab, config.preprocessing.spacing_mm), dtype=np.int64)), int(np.prod(slab.size)))
    region_outputs = region.voxels * (1 + 4 * bool(request.uncertainty) + 4 * (num_classes - 1) * request.probabilities)
    full_outputs = int(np.prod(image.GetSize())) * (1 + 4 * bool(request.uncertainty) + 4 * (num_classes - 1) * request.probabilities)
    needed = slab_voxels * SLAB_BYTES_PER_VOXEL_PER_CLASS * num_classes + region_outputs + full_outputs
    limit = request.memory_limit_gb * 1024**3
    if needed > limit:
        raise InputError(
            f"segmenting this volume needs about {needed / 1024**3:.1f} GB, above the {request.memory_limit_gb:g} GB limit "
            f"(size {image.GetSize()}, region {region.size}, {len(slabs)} slab(s))",
            "give an --roi around the lesion, or raise --max-memory-gb",
        )


def _paste(region_array: np.ndarray, region: IndexBox, image: sitk.Image) -> sitk.Image:
    full = np.zeros(tuple(reversed(image.GetSize())), dtype=region_array.dtype)
    full[region.numpy_slices] = region_array
    out = sitk.GetImageFromArray(full)
    out.CopyInformation(image)  # the input's stored size, spacing, origin and direction, bit for bit
    return out
