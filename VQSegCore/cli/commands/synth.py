"""`vqseg synth`: write a synthetic chest CT with a central lung tumour and its true label."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from VQSegCore.atomic import check_writable_folder
from VQSegCore.classes import LUNG_TUMOUR
from VQSegCore.errors import InputError
from VQSegCore.io.write import output_format


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="make a synthetic chest CT (HU) with a central lung tumour and its label",
        description="Make a deterministic synthetic chest CT in Hounsfield units with a central lung tumour. "
        "The same seed always gives the same volume.",
    )
    parser.add_argument("output", type=Path, help="CT volume to write (.nii.gz, .nrrd or .mha)")
    parser.add_argument("--label", type=Path, help="tumour label map to write (.nii.gz, .nrrd, .mha or .seg.nrrd)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("NX", "NY"), default=(512, 512), help="in-plane voxels (default 512 512)")
    parser.add_argument("--slices", type=int, default=300, help="number of axial slices (default 300)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=(0.7, 0.7, 1.5), help="voxel spacing in mm (default 0.7 0.7 1.5)")
    parser.add_argument("--diameter", type=float, help="tumour diameter in mm, 10–60 (default: drawn from the seed)")
    parser.add_argument("--side", choices=("left", "right"), help="lung that holds the tumour (default: drawn from the seed)")
    parser.add_argument("--no-tumour", dest="tumour", action="store_false",
                        help="the same chest without a tumour (for checking false positives); the label is empty")
    parser.add_argument("--noise", type=float, default=15.0, help="noise standard deviation in HU (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, context) -> dict:
    from VQSegCore.io.write import write_image, write_label_map
    from VQSegCore.output_guard import check_outputs
    from VQSegCore.synth import PhantomSpec, make_chest_ct

    outputs = [args.output] + ([args.label] if args.label else [])
    output_format(args.output, "image")
    if args.label:
        output_format(args.label)
    check_outputs(outputs)
    for path in outputs:
        check_writable_folder(path)
    try:
        spec = PhantomSpec(
            size_xy=tuple(args.size), n_slices=args.slices, spacing=tuple(args.spacing),
            tumour_diameter_mm=args.diameter, tumour_side=args.side, tumour=args.tumour, noise_hu=args.noise, seed=args.seed,
        )
        context.reporter.progress("generate", 0, 1)
        started = time.perf_counter()
        phantom = make_chest_ct(spec)
    except ValueError as problem:
        raise InputError(f"cannot make this phantom: {problem}", "adjust --size, --slices, --spacing or --diameter") from problem
    generated = time.perf_counter()
    context.reporter.progress("generate", 1, 1)
    context.cancel.check()

    context.reporter.progress("write", 0, len(outputs))
    write_image(phantom.image, args.output)
    context.reporter.progress("write", 1, len(outputs))
    if args.label:
        context.cancel.check()
        write_label_map(phantom.label, phantom.image, args.label, LUNG_TUMOUR)
        context.reporter.progress("write", 2, len(outputs))
    return {
        "image": str(args.output),
        "label": str(args.label) if args.label else None,
        "size": list(phantom.image.GetSize()),
        "spacing_mm": list(phantom.image.GetSpacing()),
        "tumour_diameter_mm": round(phantom.tumour_diameter_mm, 1),
        "tumour_volume_ml": round(phantom.tumour_volume_ml, 2),
        "tumour_centre_mm": [round(c, 1) for c in phantom.tumour_centre_mm] if phantom.tumour_centre_mm else None,
        "seconds": {"generate": round(generated - started, 2), "write": round(time.perf_counter() - generated, 2)},
    }
