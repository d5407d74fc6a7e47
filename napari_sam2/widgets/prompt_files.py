"""Prompt files from the widget: the layers' prompts <-> a ``PromptSet`` (JSON, as the
command line reads it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_sam2.io.prompts import PromptSet

from .layers import NO_IMAGE, image_data
from .prompts import NEGATIVE, OBJECT, POLARITY, POSITIVE

if TYPE_CHECKING:  # pragma: no cover
    from .controller import Sam2Controller

__all__ = ["export_prompts", "session_prompts", "import_prompts"]

def export_prompts(controller: "Sam2Controller", model: str | None = None, image_size: int | None = None) -> PromptSet:
    """The prompts of the tracked slice as a ``PromptSet`` (for JSON and the CLI)."""
    t = controller.target
    if t is None:
        raise ValueError(NO_IMAGE)
    geometry = controller.geometry()
    prompts = controller.prompts(geometry)
    if controller.problems:
        raise ValueError("; ".join(p.message for p in controller.problems) + ": fix or remove it first")
    data = image_data(t.image)
    frames_shape = (geometry.num_frames, *geometry.frame_shape) + ((3,) if t.image.rgb else ())
    result = PromptSet(
        model=model,
        image_size=image_size,
        frames_shape=frames_shape,
        frames_dtype=str(np.dtype(data.dtype)),
        contrast_limits=controller.contrast_limits(),
    )
    registry = t.registry
    for (frame, obj), prompt in sorted(prompts.items()):
        result.object(obj, registry.name(obj))
        if prompt.painted:
            mask = np.asarray(t.labels.data[geometry.labels_index(frame)]) == obj
            result.set_prompt(obj, frame, mask=mask)
        else:
            result.set_prompt(obj, frame, points=list(prompt.points) or None,
                              labels=list(prompt.labels) or None, box=prompt.box)
    return result


def session_prompts(controller: "Sam2Controller", model: str | None = None, image_size: int | None = None) -> PromptSet:
    """The session file: the prompts, and after Track all its lineage and the mask each
    track started from (where the user has no prompt of that object on that frame), so
    the command line can replay the run."""
    import dataclasses

    result = export_prompts(controller, model, image_size)
    record = controller.target.track_record if controller.target is not None else None
    if record is None:
        return result
    prompted = {(prompt.frame, obj.id) for obj, prompt in result.iter_prompts()}
    starts = {obj: start for obj, start in record.starts.items() if (start[0], obj) not in prompted}
    return dataclasses.replace(record, starts=starts).session_prompts(result)


def import_prompts(controller: "Sam2Controller", prompt_set: PromptSet) -> int:
    """Put a ``PromptSet``'s prompts on the layers of the tracked slice.

    Clicks go to the clicks layer, boxes to the boxes layer and masks into the masks
    layer as hand-painted frames; the next sync sends them to the engine. Returns
    the number of prompts added. Raises ``ValueError`` when they do not fit.
    """
    t = controller.target
    if t is None:
        raise ValueError(NO_IMAGE)
    geometry = controller.geometry()
    prompt_set.validate_against((geometry.num_frames, *geometry.frame_shape))
    registry = t.registry
    base = np.array([float(i) for i in geometry.labels_index(0)[:-2]] + [0.0, 0.0])
    count = 0
    for obj, prompt in prompt_set.iter_prompts():
        registry.ensure(obj.id)
        if obj.name:
            registry.rename(obj.id, obj.name)
        coord = base.copy()
        if geometry.axis is not None:
            coord[geometry.axis] = prompt.frame
        if prompt.mask is not None:
            index = geometry.labels_index(prompt.frame)
            plane = np.asarray(t.labels.data[index]).copy()
            plane[plane == obj.id] = 0
            plane[np.asarray(prompt.mask, bool)] = obj.id
            t.labels.data[index] = plane
            key = (geometry.plane_key(prompt.frame), obj.id)
            t.painted[key] = t.painted.get(key, 0) + 1
        for (r, c), label in zip(prompt.points, prompt.labels):
            point = coord.copy()
            point[-2:] = (r, c)
            t.points.selected_data = set()
            t.points.feature_defaults = {OBJECT: obj.id, POLARITY: POSITIVE if label else NEGATIVE}
            t.points.add(point[None])
        if prompt.box is not None:
            r0, c0, r1, c1 = prompt.box
            corners = np.repeat(coord[None], 4, axis=0)
            corners[:, -2:] = [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]
            t.boxes.selected_data = set()
            t.boxes.feature_defaults = {OBJECT: obj.id}
            t.boxes.add_rectangles(corners)
        count += 1
    t.labels.refresh()
    controller.sync_layer_defaults()
    controller.on_objects_changed()
    controller.on_prompts_changed()
    return count
