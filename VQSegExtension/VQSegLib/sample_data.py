"""A synthetic chest CT with a lung tumour in Slicer's Sample Data module, so a new user can try Segment in one click.

The volume is made on the user's machine by the core's phantom (VQSegCore.synth needs numpy and
SimpleITK only, both in Slicer's Python: no torch, no other package, no download) the first time the
sample is chosen, then kept in Slicer's cache folder. Sample Data calls `loadSyntheticChestCt` when
its button is pressed, so it works before VQSeg's packages are installed.
"""

import os

CATEGORY = "VQSeg"
SAMPLE_NAME = "VQSegSyntheticChestCT"
NODE_NAME = "VQSeg synthetic chest CT"
FILE_NAME = "VQSegSyntheticChestCT.nrrd"
# A small chest at 1 x 1 x 2.5 mm with one 25 mm tumour: what `vqseg demo` segments, seconds to make.
PHANTOM = {"size_xy": (256, 256), "n_slices": 40, "spacing": (1.0, 1.0, 2.5), "tumour_diameter_mm": 25.0, "seed": 7}


def writeSyntheticChestCt(folder: str) -> str:
    """The phantom as `folder/FILE_NAME` (made once; an existing file is reused). Needs VQSegCore on sys.path."""
    path = os.path.join(folder, FILE_NAME)
    if not os.path.isfile(path):
        import SimpleITK as sitk

        from VQSegCore.synth import PhantomSpec, make_chest_ct

        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{os.getpid()}-{FILE_NAME}")  # renamed into place: never a half file
        sitk.WriteImage(make_chest_ct(PhantomSpec(**PHANTOM)).image, temporary, True)
        os.replace(temporary, path)
    return path


def loadSyntheticChestCt(source=None):
    """Sample Data's custom downloader: make the phantom in Slicer's cache folder and load it."""
    import slicer

    return slicer.util.loadVolume(writeSyntheticChestCt(slicer.app.cachePath), {"name": NODE_NAME})


def register(thumbnailPath: str) -> None:
    """Add the sample to Sample Data (called when Slicer has started: Sample Data must be loaded)."""
    import SampleData

    # Sample Data needs a URI per file; with a custom downloader it is never fetched.
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY, sampleName=SAMPLE_NAME, uris="vqseg-synthetic:" + FILE_NAME, fileNames=FILE_NAME, nodeNames=NODE_NAME,
        thumbnailFileName=thumbnailPath, loadFileType="VolumeFile", customDownloader=loadSyntheticChestCt)
