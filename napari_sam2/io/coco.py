"""COCO-style JSON with one RLE annotation per object and frame.

Each frame is a COCO "image" (``id`` = frame + 1, since many COCO tools treat id 0
as missing; ``frame_index`` holds the frame), each object present on a frame an
annotation with ``segmentation`` (RLE, ``size`` = [H, W], column-major counts as in
pycocotools), ``area``, ``bbox`` ([x, y, width, height]), ``iscrowd`` = 0 and
``object_id`` / ``track_id`` = the label. Frames where an object is absent have no
annotation for it. Readable with ``pycocotools.mask.decode``.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .atomic import atomic_output, check_output
from .labels import Progress, check_labels, iter_frames
from .rle import decode_mask, encode_labels, rle_area, rle_bbox

__all__ = ["write_coco_rle", "read_coco_rle"]


def write_coco_rle(
    path: str | os.PathLike,
    labels: Any,
    compressed: bool = True,
    names: Mapping[int, str] | None = None,
    image_names: Sequence[str] | None = None,
    category: str = "object",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write a (T, H, W) label stack as COCO-style RLE annotations to a JSON file.

    ``compressed`` chooses pycocotools' compact string counts over plain integer
    lists. ``names`` maps object ids to display names (stored under "objects");
    ``image_names`` gives each frame's ``file_name`` (default 'frame_00000').
    """
    from .. import __version__

    path = check_output(path, overwrite)
    labels, num_frames, height, width = check_labels(labels)
    if image_names is not None and len(image_names) != num_frames:
        raise ValueError(f"image_names has {len(image_names)} entries for {num_frames} frames")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[int] = set()
    for t, frame in enumerate(iter_frames(labels, num_frames, progress)):
        images.append(
            {
                "id": t + 1,
                "frame_index": t,
                "file_name": image_names[t] if image_names is not None else f"frame_{t:05d}",
                "height": height,
                "width": width,
            }
        )
        for obj, rle in encode_labels(frame, compressed=compressed).items():
            seen.add(obj)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": t + 1,
                    "category_id": 1,
                    "object_id": obj,
                    "track_id": obj,
                    "segmentation": rle,
                    "area": rle_area(rle),
                    "bbox": rle_bbox(rle),
                    "iscrowd": 0,
                }
            )
    names = dict(names or {})
    document = {
        "info": {
            "description": "masks exported by napari-sam2",
            "version": "1.0",
            "producer": f"napari-sam2 {__version__}",
            "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rle_order": "column-major",
        },
        "images": images,
        "categories": [{"id": 1, "name": category}],
        "objects": [{"id": obj, "name": names.get(obj, f"object {obj}")} for obj in sorted(seen)],
        "annotations": annotations,
    }
    with atomic_output(path, overwrite=overwrite) as temp:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
    return path


def read_coco_rle(path: str | os.PathLike) -> tuple[np.ndarray, dict[int, str]]:
    """Read a file written by :func:`write_coco_rle` back into a (T, H, W) uint32 label stack.

    Where annotations overlap, the later one wins. Returns the labels and the object names.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        images = sorted(document["images"], key=lambda image: image.get("frame_index", image["id"]))
        index_of = {image["id"]: t for t, image in enumerate(images)}
        height, width = int(images[0]["height"]), int(images[0]["width"])
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{path} is not a COCO RLE file written by napari-sam2: {err}") from err
    stack = np.zeros((len(images), height, width), dtype=np.uint32)
    for annotation in document.get("annotations", []):
        t = index_of[annotation["image_id"]]
        label = int(annotation.get("object_id", annotation.get("track_id", annotation["id"])))
        stack[t][decode_mask(annotation["segmentation"])] = label
    names = {int(o["id"]): str(o.get("name", "")) for o in document.get("objects", [])}
    return stack, names
