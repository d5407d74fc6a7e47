"""The panel's keyboard shortcuts as napari actions.

Each shortcut is an action of napari's action manager (``napari-sam2:propagate``, ...)
bound on the viewer, so it is listed, and can be changed or removed, under
*Preferences > Shortcuts > Viewer key bindings*; napari keeps the user's choice in its
settings and applies it again on the next launch. An action acts on the panel of the
viewer it was pressed in and does nothing in a viewer without one.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

from napari.components import ViewerModel

__all__ = ["KEY_ACTIONS", "KeyAction", "register_key_actions", "attach", "detach", "current_keys", "shortcut_help"]

PREFIX = "napari-sam2"


@dataclass(frozen=True)
class KeyAction:
    name: str  # napari action name, without the package prefix
    keys: tuple[str, ...]  # default shortcuts, napari's notation
    description: str  # what napari shows in its preferences and tooltips
    run: Callable[[Any], Any]  # called with the panel

    @property
    def full_name(self) -> str:
        return f"{PREFIX}:{self.name}"


KEY_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("toggle_polarity", ("N",), "SAM 2: switch plain clicks between positive and negative",
              lambda panel: panel.toggle_polarity()),
    KeyAction("new_object", ("Shift-N",), "SAM 2: start a new object", lambda panel: panel.new_object()),
    KeyAction("next_object", (".",), "SAM 2: next object", lambda panel: panel.step_object(1)),
    KeyAction("previous_object", (",",), "SAM 2: previous object", lambda panel: panel.step_object(-1)),
    KeyAction("propagate", ("G",), "SAM 2: propagate every object", lambda panel: panel.propagate()),
    KeyAction("cancel", ("Escape",), "SAM 2: cancel propagation, Track all or download", lambda panel: panel.cancel()),
)

# the open panels; an action runs on the one docked in the viewer it was pressed in
_PANELS: "weakref.WeakSet[Any]" = weakref.WeakSet()


def attach(panel: Any) -> None:
    """Let the actions reach ``panel`` (registers them on first use)."""
    register_key_actions()
    _PANELS.add(panel)


def detach(panel: Any) -> None:
    _PANELS.discard(panel)


def _unwrapped(viewer: Any) -> Any:
    # napari hands plugin widgets a proxy of the viewer; keys get the viewer itself
    return getattr(viewer, "__wrapped__", viewer)


def _panel_of(viewer: Any) -> Any:
    viewer = _unwrapped(viewer)
    for panel in list(_PANELS):
        if _unwrapped(getattr(panel, "viewer", None)) is viewer:
            return panel
    return None


def _command(action: KeyAction) -> Callable[[ViewerModel], None]:
    def command(viewer: ViewerModel) -> None:
        panel = _panel_of(viewer)
        if panel is not None:
            action.run(panel)

    command.__name__ = action.name
    return command


def register_key_actions() -> None:
    """Register the actions with napari and bind their shortcuts (once per process).

    A shortcut the user changed in napari's preferences is kept: the defaults are bound
    only to actions the settings know nothing about.
    """
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    saved = get_settings().shortcuts.shortcuts
    for action in KEY_ACTIONS:
        name = action.full_name
        if name in action_manager._actions:
            continue
        action_manager.register_action(name, _command(action), action.description, ViewerModel)
        for key in saved.get(name, action.keys):
            action_manager.bind_shortcut(name, key)


def current_keys(action: KeyAction) -> list[str]:
    """The shortcuts bound to ``action`` now (e.g. "Shift+N")."""
    from napari.utils.action_manager import action_manager
    from napari.utils.interactions import Shortcut

    return [Shortcut(k).qt for k in action_manager._shortcuts.get(action.full_name, [])]


def shortcut_help() -> list[tuple[str, str]]:
    """(keys, what they do) for the panel's help text, with the keys bound now."""
    rows = [
        ("Click", "add a click of the current kind to the current object"),
        ("Shift+click / right click", "add a click of the other kind (negative by default)"),
    ]
    for action in KEY_ACTIONS:
        keys = " / ".join(current_keys(action)) or "no key (set one in Preferences > Shortcuts)"
        rows.append((keys, action.description.removeprefix("SAM 2: ")))
    rows += [
        ("R (boxes layer)", "draw a box around the current object"),
        ("P / E (masks layer)", "paint / erase the current object by hand"),
    ]
    return rows
