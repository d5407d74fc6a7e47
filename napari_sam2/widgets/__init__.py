"""The napari dock widget: Qt and layers only; the work is done by ``napari_sam2.tracking``.

``widget.Sam2Widget`` wires Qt events to calls; ``panel`` lays out the controls;
``model_actions`` and ``object_actions`` are its Model and Objects sections;
``controller`` reads prompt layers and writes the masks layer; ``layers``, ``prompts``,
``prompt_files``, ``objects``, ``jobs`` and ``notes`` are small helpers with one job
each. Nothing here is imported at napari start-up: the manifest points straight at the
widget class.
"""
