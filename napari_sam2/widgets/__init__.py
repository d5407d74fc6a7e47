"""The napari dock widget and the Qt-free pieces it is made of.

``widget.Sam2Widget`` is the Qt view; ``controller.Sam2Controller`` translates between
layers and the engine; ``geometry``, ``prompts``, ``masks``, ``objects``, ``loading``
and ``jobs`` are small helpers with one job each. Nothing here is imported at napari
start-up: the manifest points straight at the widget class.
"""
