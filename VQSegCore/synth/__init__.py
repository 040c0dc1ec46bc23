"""Synthetic chest CT phantoms with a central lung tumour and its exact label.

`make_chest_ct(PhantomSpec(...))` returns a deterministic, CT-like chest volume in Hounsfield
units and the label of the tumour drawn into it. Tests, the demo and the benchmarks use it where
no real data is available: the label is exactly the voxels painted as tumour, so a perfect
segmenter reaches Dice 1.0.

Coordinate convention
---------------------
Arrays are [z, y, x] (SimpleITK's `GetArrayFromImage` order). The phantom is drawn in index
space with the spec's spacing: column x increases towards the patient's left, row y towards
posterior, slice z towards superior. With the identity direction these are the LPS axes of
ITK/DICOM, so an axial slice shown with row 0 at the top reads like a radiological display
(anterior up, the patient's left on the viewer's right). A non-identity direction or an explicit
origin changes only the geometry stored on the images, not what is drawn in index space.

Anatomy
-------
The anatomy is designed in reference millimetres for an adult chest (torso about 326 mm wide
and 236 mm deep, lungs 270 mm from base to apex) and scaled to the field of view: in-plane by
one factor so that the torso fits the slice, along z so that the lungs fit the slab. A small test
volume (96 x 96 x 40 at 3 mm) therefore still holds every structure. The tumour is never scaled:
its diameter is in real millimetres.

Axial cross-sections (body, fat, muscle, lungs, mediastinum, heart, great vessels, airways,
spine, ribs) are cheap 2D masks evaluated slice by slice from a normalised height
t (0 = lung base, 1 = lung apex), so they vary smoothly along z. Each voxel first gets a tissue
class, then its CT number. The pulmonary vessel trees (grown from the hila, thinner at every
branching, partial-volume faint where thinner than a voxel) and the tumour are genuinely 3D and
are drawn only inside their bounding boxes. Noise is Gaussian, slightly smoothed in-plane so it
has the grain of CT noise, added slab by slab.

The tumour
----------
A lobulated soft-tissue mass at hilum level in the chosen lung. It may only occupy lung
(parenchyma, vessels, bronchi), never the mediastinum or the chest wall, and it is placed across
the medial lung border, so its medial face lies flat on the mediastinum. Its size is set so that
the label's volume equals that of a sphere of the nominal diameter; the label is the largest
connected part of what was drawn, and it is exactly the voxels painted as tumour.

Randomness comes only from `numpy.random.default_rng` generators spawned from the seed: one
stream each for the anatomy variation, the tumour, the vessels and the noise, so that fixing the
tumour diameter, for instance, does not change the vessels or the noise.

Files
-----
One component per file, composed in phantom.py: spec.py (what to draw and what comes back),
validate.py, tissues.py (tissue classes, CT numbers, tissue groups), layout.py (reference mm to
voxels), shapes.py (2D masks and painting), maths.py, torso.py (outline and thoracic cavity),
organs.py (abdomen, lungs, mediastinum, heart, great vessels, airways), skeleton.py (spine and
chest wall), anatomy.py (the slice-by-slice loop), vessels.py (pulmonary vessel trees), tumour.py,
noise.py and phantom.py (`make_chest_ct`, images and their geometry).
"""

from VQSegCore.synth.phantom import make_chest_ct
from VQSegCore.synth.spec import Phantom, PhantomSpec

__all__ = ["PhantomSpec", "Phantom", "make_chest_ct"]
