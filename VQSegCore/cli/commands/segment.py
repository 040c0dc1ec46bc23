"""`vqseg segment`: segment a volume with a VQ-Seg model; the output lies on the input's exact grid.

    vqseg segment ct.nii.gz --output tumour.seg.nrrd [--model NAME[@VERSION] | --model-dir DIR]
        [--roi-ras X0 Y0 Z0 X1 Y1 Z1 | --roi-lps ... | --roi-ijk I0 J0 K0 I1 J1 K1]
        [--probabilities P.nii.gz] [--uncertainty U.nii.gz [--uncertainty-mode entropy|samples]]
        [--min-component-ml V] [--device auto|cpu|cuda] [--precision auto|fp32|bf16|fp16] [--window N] [--events]

INPUT is any volume the I/O layer reads, a DICOM series folder included. OUT: .nii.gz, .nii, .nrrd,
.mha, .seg.nrrd (named, coloured segments with terminology) or, for a DICOM input, .dcm (a DICOM
SEG object that references the input series). The model sees each slice in square windows of its
training crop, blended with Gaussian weights; --window N sets another side, 0 whole slices.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from VQSegCore.errors import InputError

DICOM_SEG_SUFFIX = ".dcm"


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def _dicom_seg_missing() -> str | None:
    """What DICOM SEG export lacks (Slicer 5.10 ships pydicom 2.4, too old for highdicom), or None."""
    from importlib.metadata import PackageNotFoundError, version

    for name, lowest in (("highdicom", (0, 28)), ("pydicom", (3, 0, 1))):
        try:
            found = tuple(int(part) for part in re.findall(r"\d+", version(name))[:len(lowest)])
        except PackageNotFoundError:
            return f"{name} >= {'.'.join(map(str, lowest))}, which is not installed"
        if found < lowest:
            return f"{name} >= {'.'.join(map(str, lowest))}; {version(name)} is installed"
    return None


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment a volume (NIfTI, NRRD, MHA or a DICOM series) with a VQ-Seg model",
        description="Segment a volume with a VQ-Seg model. The label map has exactly the input's size, spacing, "
        "origin and direction. CT volumes are cropped to the lungs (or the body) first; --roi-* limits the work to a box.",
    )
    parser.add_argument("input", type=Path, help="volume file or DICOM series folder")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="label map to write: .nii.gz, .nii, .nrrd, .mha, .seg.nrrd, or .dcm (DICOM SEG, DICOM input only)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="NAME[@VERSION]", help="a model of the store or a shipped default (default: lung-lesion)")
    model.add_argument("--model-dir", type=Path, metavar="DIR", help="a model folder (card.json + weights.safetensors)")
    roi = parser.add_mutually_exclusive_group()
    roi.add_argument("--roi-ras", type=float, nargs=6, metavar="MM", help="box corners x0 y0 z0 x1 y1 z1 in RAS mm (as Slicer shows)")
    roi.add_argument("--roi-lps", type=float, nargs=6, metavar="MM", help="box corners x0 y0 z0 x1 y1 z1 in LPS mm (as DICOM/ITK)")
    roi.add_argument("--roi-ijk", type=int, nargs=6, metavar="INDEX", help="first and last voxel index i0 j0 k0 i1 j1 k1 (inclusive)")
    parser.add_argument("--probabilities", type=Path, metavar="FILE", help="also write the per-class probabilities (float32 image)")
    parser.add_argument("--uncertainty", type=Path, metavar="FILE", help="also write a per-voxel uncertainty map in [0, 1]")
    parser.add_argument("--uncertainty-mode", choices=("entropy", "samples"), default="entropy",
                        help="entropy of the softmax (one pass), or of the mean over flip and QPM samples (4 passes)")
    parser.add_argument("--min-component-ml", type=float, default=0.0, metavar="ML",
                        help="remove connected components smaller than this volume, per class (default 0: keep all)")
    parser.add_argument("--keep-outside-lungs", dest="lungs_only", action="store_false",
                        help="CT without --roi-*: keep findings that touch no lung (default: they are removed)")
    parser.add_argument("--crop", choices=("auto", "lungs", "body", "none"), default="auto",
                        help="CT without --roi-*: process only the lungs' bounding box (auto: lungs, else body), the body's, or all")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="auto: bf16 on GPUs and on CPUs with native bf16, fp32 otherwise")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (default: 2 on CPU, 16 on GPU)")
    parser.add_argument("--window", type=int, default=None, metavar="N",
                        help="side in model-grid voxels of the square windows the model sees each slice through, blended with Gaussian "
                        "weights (default: the model's training crop; 0 = whole slices)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--max-memory-gb", type=float, default=8.0, help="refuse runs estimated to need more memory (default 8)")
    # argparse takes only -5 and -.5 for negative numbers; "-1e3", "-inf" would read as options and
    # end in "expected 6 arguments". Its matcher is widened so that ROI corners reach our own checks.
    parser._negative_number_matcher = _NEGATIVE_NUMBER
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.atomic import check_writable_folder
    from VQSegCore.infer import RoiRequest, SegmentRequest, segment_volume
    from VQSegCore.io import read_volume
    from VQSegCore.io.write import output_format, write_image, write_label_map
    from VQSegCore.model import load_model
    from VQSegCore.models import locate_model
    from VQSegCore.output_guard import check_outputs

    started = time.perf_counter()
    dicom_seg = str(args.output).lower().endswith(DICOM_SEG_SUFFIX)
    if dicom_seg and (missing := _dicom_seg_missing()):
        raise InputError(f"{args.output}: DICOM SEG output needs {missing}", "install it (pip install 'highdicom>=0.28' 'pydicom>=3.0.1'), "
                         "or write .seg.nrrd or .nii.gz instead")
    if not dicom_seg:
        output_format(args.output)
    outputs = [args.output] + [p for p in (args.probabilities, args.uncertainty) if p]
    for path in outputs[1:]:
        output_format(path, "image")
    folder = locate_model(args.model, args.model_dir)
    check_outputs(outputs, inputs=[args.input, folder])
    for path in outputs:
        check_writable_folder(path)
    positive = [value for value in (args.batch_size, args.threads) if value is not None]
    if any(value < 1 for value in positive) or args.max_memory_gb <= 0 or args.min_component_ml < 0:
        raise InputError("--batch-size and --threads must be >= 1, --max-memory-gb > 0 and --min-component-ml >= 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    model, card = load_model(folder)
    volume = read_volume(args.input)
    if dicom_seg and volume.dicom_series is None:
        raise InputError(f"{args.output}: a DICOM SEG output needs a DICOM series input", "write .nii.gz, .nrrd or .seg.nrrd instead")
    for note in volume.notes:
        context.reporter.log(note)
    read_s = time.perf_counter() - started
    context.cancel.check()

    roi = None
    for system in ("ras", "lps", "ijk"):
        corners = getattr(args, f"roi_{system}")
        if corners is not None:
            roi = RoiRequest(system, tuple(corners[:3]), tuple(corners[3:]))
    request = SegmentRequest(
        roi=roi, crop=args.crop, uncertainty=args.uncertainty_mode if args.uncertainty else None,
        probabilities=args.probabilities is not None, min_component_ml=args.min_component_ml, lungs_only=args.lungs_only,
        device=args.device,
        precision=args.precision, batch_size=args.batch_size, window=args.window, memory_limit_gb=args.max_memory_gb,
    )
    result = segment_volume(model, card, volume.image, request, progress=context.reporter.progress, cancel=context.cancel)
    for note in result.notes:
        context.reporter.log(note, "warning" if result.ood and note == result.ood.warning else "info")
    for warning in result.warnings:
        context.reporter.log(warning, "warning")
    context.cancel.check()

    written = time.perf_counter()
    if dicom_seg:
        from VQSegCore.io.dicom_seg import write_dicom_seg

        write_dicom_seg(result.labels, volume.dicom_series, model.config.classes, args.output,
                        algorithm_name="VQSeg", algorithm_version=str(card.get("software_version", "")))
    else:
        write_label_map(result.labels, volume.image, args.output, model.config.classes)
    if args.probabilities:
        write_image(result.probabilities, args.probabilities)
    if args.uncertainty:
        write_image(result.uncertainty, args.uncertainty)
    timings = {"read": round(read_s, 3), **result.timings_s, "write": round(time.perf_counter() - written, 3)}
    timings["total"] = round(time.perf_counter() - started, 3)
    return {
        "output": str(args.output),
        "probabilities": str(args.probabilities) if args.probabilities else None,
        "uncertainty": str(args.uncertainty) if args.uncertainty else None,
        "model": str(folder),
        **result.report(),
        "timings_s": timings,
    }
