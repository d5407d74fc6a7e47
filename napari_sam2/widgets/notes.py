"""napari notifications, by kind ('error', 'warning', 'info')."""

from __future__ import annotations

__all__ = ["notify"]


def notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        kind, notifications.show_info
    )(message)
