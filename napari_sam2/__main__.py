"""``python -m napari_sam2``: the same as the ``napari-sam2`` command."""

import sys

from .cli import main

sys.exit(main())
