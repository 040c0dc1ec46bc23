"""VQSegCore: the Slicer-independent core of VQSeg.

Importing this package must stay cheap and must not import torch: the Slicer module imports
`VQSegCore.events` in the GUI process, where torch may not be installed.
"""

__version__ = "0.1.0"
