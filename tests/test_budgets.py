"""Default cache budgets follow the machine's memory and are what a session uses."""

from __future__ import annotations

import numpy as np

from miniature import miniature_model

from napari_sam2.model import VideoSession
from napari_sam2.model.budgets import MiB, CacheBudgets, available_memory, default_budgets


def test_budgets_are_a_bounded_fraction_of_the_memory():
    small, laptop, big = (default_budgets(g << 30) for g in (2, 16, 256))
    assert small.total == 256 * MiB  # the floor
    assert laptop.total == int(0.05 * (16 << 30))
    assert big.total == 2048 * MiB  # the ceiling
    for budgets in (small, laptop, big):
        assert budgets.features == int(0.6 * budgets.total) and budgets.conditioned == int(0.2 * budgets.total)
        assert budgets.total == budgets.features + budgets.conditioned + budgets.records
    assert "MiB" in laptop.describe() and "image features" in laptop.describe()


def test_this_machine_and_the_session_defaults():
    memory = available_memory()
    assert memory is not None and memory > 256 * MiB
    with VideoSession(miniature_model(image_size=64), np.zeros((2, 64, 64), np.uint8)) as session:
        assert session.budgets == default_budgets()
    with VideoSession(miniature_model(image_size=64), np.zeros((2, 64, 64), np.uint8), record_ram_bytes=MiB) as session:
        assert session.budgets.records == MiB and session.budgets.features == default_budgets().features
        assert isinstance(session.budgets, CacheBudgets)


def test_the_panel_states_the_budgets_of_this_machine():
    from napari_sam2.tracking import LoadedModel, ModelChoice
    from napari_sam2.widgets.model_actions import loaded_status

    loaded = LoadedModel(miniature_model(image_size=64), ModelChoice("sam2.1_hiera_tiny", device="cpu"))
    assert loaded_status(loaded, default_budgets(16 << 30)).endswith("session caches up to 819 MiB")
    assert f"session caches up to {default_budgets().total / MiB:.0f} MiB" in loaded_status(loaded)
