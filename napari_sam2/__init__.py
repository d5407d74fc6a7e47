"""napari-sam2: SAM 2 segmentation and tracking for napari.

Importing the package is cheap: torch and the model are only imported when a widget,
reader or command actually needs them.
"""

__version__ = "0.1.0"
