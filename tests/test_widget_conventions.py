"""napari conventions: shortcuts are napari actions (listed and changeable in the
preferences), the panel remembers its settings, the panel is in napari's Layers menus."""

from __future__ import annotations

import json

import pytest
from gui_support import click, loaded_tiny, new_viewer, open_widget, press, ready  # noqa: F401
from qtpy.QtCore import Qt

from napari_sam2.sample_data import cells_timelapse

pytestmark = pytest.mark.gui

ACTIONS = {
    "napari-sam2:toggle_polarity": "N",
    "napari-sam2:new_object": "Shift-N",
    "napari-sam2:next_object": ".",
    "napari-sam2:previous_object": ",",
    "napari-sam2:propagate": "G",
    "napari-sam2:cancel": "Escape",
}


def _panel(make_napari_viewer, qtbot):
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(cells_timelapse(num_frames=4, size=96, seed=1).image)
    return viewer, open_widget(viewer)


def test_shortcuts_are_napari_actions_listed_in_the_preferences(make_napari_viewer, qtbot):
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from napari.components import ViewerModel
    from napari.utils.action_manager import action_manager
    from napari.utils.key_bindings import coerce_keybinding

    viewer, widget = _panel(make_napari_viewer, qtbot)
    for name, key in ACTIONS.items():
        action = action_manager._actions[name]
        assert action.keymapprovider is ViewerModel, name
        assert action.description.startswith("SAM 2: ")
        assert action_manager._shortcuts[name] == [coerce_keybinding(key)] or action_manager._shortcuts[name] == [key]
        assert coerce_keybinding(key) in ViewerModel.class_keymap, name
    editor = ShortcutEditor()
    qtbot.addWidget(editor)
    listed = editor.key_bindings_strs[editor.VIEWER_KEYBINDINGS]
    assert set(ACTIONS) <= set(listed)
    assert "<b>G</b>: propagate every object" in widget.help_label.text()


def test_a_shortcut_changed_as_in_the_preferences_works_at_once(make_napari_viewer, qtbot):
    from napari.utils.action_manager import action_manager

    viewer, widget = _panel(make_napari_viewer, qtbot)
    name = "napari-sam2:toggle_polarity"
    old = action_manager.unbind_shortcut(name)  # what the preferences' editor does
    try:
        action_manager.bind_shortcut(name, "J")
        assert widget.positive_radio.isChecked()
        press(viewer, qtbot, Qt.Key_N)
        assert widget.positive_radio.isChecked(), "N no longer switches"
        press(viewer, qtbot, Qt.Key_J)
        assert widget.negative_radio.isChecked()
        assert "<b>J</b>: switch plain clicks" in widget.help_label.text()
    finally:
        action_manager.unbind_shortcut(name)
        for key in old or ["N"]:
            action_manager.bind_shortcut(name, key)
    press(viewer, qtbot, Qt.Key_N)
    assert widget.positive_radio.isChecked()


def test_actions_reach_only_the_panel_of_their_viewer(make_napari_viewer, qtbot):
    from napari.utils.action_manager import action_manager

    viewer, widget = _panel(make_napari_viewer, qtbot)
    other = make_napari_viewer()
    action = action_manager._actions["napari-sam2:toggle_polarity"]
    action.command(other)  # a viewer without the panel: nothing happens
    assert widget.positive_radio.isChecked()
    action.command(viewer)
    assert widget.negative_radio.isChecked()
    widget.close_widget()
    action.command(viewer)  # a closed panel is not reached any more
    assert widget.negative_radio.isChecked()


def test_the_panel_remembers_its_settings(make_napari_viewer, qtbot, tmp_path):
    from napari_sam2.widgets.settings import settings_path

    viewer, widget = _panel(make_napari_viewer, qtbot)
    assert not settings_path().exists(), "nothing is written before the user changes something"
    widget.size_combo.setCurrentIndex(widget.size_combo.findData(512))
    widget.weights_combo.setCurrentIndex(1)  # local file
    widget.path_edit.setText(str(tmp_path / "tuned.pt"))
    widget.model_combo.setCurrentIndex(widget.model_combo.findText("sam2.1_hiera_small"))
    widget.contrast_combo.setCurrentIndex(1)
    widget.direction_combo.setCurrentText("Forward")
    widget.follow_check.setChecked(False)
    widget.finetune.steps_spin.setValue(77)
    saved = json.loads(settings_path().read_text())["panel"]
    assert saved["image_size"] == 512 and saved["direction"] == "Forward" and saved["finetune_steps"] == 77
    viewer.close()

    viewer, again = _panel(make_napari_viewer, qtbot)
    assert again.size_combo.currentData() == 512
    assert again.weights_combo.currentIndex() == 1 and again.path_row.isVisibleTo(again)
    assert again.path_edit.text() == str(tmp_path / "tuned.pt")
    assert again.model_combo.currentText() == "sam2.1_hiera_small"
    assert again.contrast_combo.currentIndex() == 1
    assert again.direction_combo.currentText() == "Forward"
    assert not again.follow_check.isChecked()
    assert again.finetune.steps_spin.value() == 77
    choice = again.model_choice()
    assert choice.image_size == 512 and choice.checkpoint == str(tmp_path / "tuned.pt")


def test_unusable_saved_settings_give_the_defaults(make_napari_viewer, qtbot):
    from napari_sam2.widgets.settings import settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": 1, "panel": {"model": "no such model", "device": "tpu", "image_size": 333,
                                                        "direction": "Backward", "follow": "yes"}}))
    viewer, widget = _panel(make_napari_viewer, qtbot)
    assert widget.model_combo.currentText() == "sam2.1_hiera_tiny"
    assert widget.device_combo.currentIndex() == 0
    assert widget.size_combo.currentData() in (1024, 512, 256) and widget.size_combo.findData(333) < 0
    assert widget.direction_combo.currentText() == "Backward"  # what fits is still used
    assert widget.follow_check.isChecked()
    viewer.close()
    path.write_text("{ not json")
    viewer, widget = _panel(make_napari_viewer, qtbot)
    assert widget.direction_combo.currentText() == "Both directions"


def test_the_layers_menus_open_the_panel(make_napari_viewer, qtbot):
    from napari._app_model import get_app_model

    viewer = new_viewer(make_napari_viewer, qtbot)
    app = get_app_model()
    for menu in ("napari/layers/segment", "napari/layers/track"):
        ids = [getattr(item, "command", None) and item.command.id for item in app.menus.get_menu(menu)]
        assert "napari-sam2.widget" in ids, menu
    app.commands.execute_command("napari-sam2.widget").result()
    qtbot.wait(50)
    docked = [name for name in viewer.window.dock_widgets]
    assert any("Segment and track" in name for name in docked), docked


@pytest.mark.parametrize("bound_at_startup", [True, False])
def test_a_shortcut_saved_in_napari_settings_replaces_the_default(monkeypatch, bound_at_startup):
    """Next launch: napari binds the saved shortcut (before the plugin's actions exist);
    registering the actions then keeps it and does not add the default."""
    from types import SimpleNamespace

    import napari.settings
    from napari.components import ViewerModel
    from napari.utils import action_manager as module
    from napari.utils.action_manager import ActionManager
    from napari.utils.key_bindings import coerce_keybinding

    from napari_sam2.widgets import keys

    name = "napari-sam2:propagate"
    saved = {name: [coerce_keybinding("Shift-G")]}
    monkeypatch.setattr(napari.settings, "get_settings", lambda: SimpleNamespace(shortcuts=SimpleNamespace(shortcuts=saved)))
    fresh = ActionManager()
    monkeypatch.setattr(module, "action_manager", fresh)
    keymap = dict(ViewerModel.class_keymap)
    try:
        if bound_at_startup:
            for key in saved[name]:
                fresh.bind_shortcut(name, key)  # what napari does with its settings at start-up
        keys.register_key_actions()
        assert fresh._shortcuts[name] == [coerce_keybinding("Shift-G")]
        assert fresh._shortcuts["napari-sam2:toggle_polarity"] == ["N"]
        assert keys.current_keys(keys.KEY_ACTIONS[4]) == ["Shift+G"]
    finally:
        ViewerModel.class_keymap.clear()
        ViewerModel.class_keymap.update(keymap)
