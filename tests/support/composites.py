"""Request bodies of ``POST /composite/generate-nchannel`` for the tests."""

from __future__ import annotations


def channel(keys, color, **extra) -> dict:
    """One channel: its files, its colour (``{"hue": 240}``...) and other fields."""
    return {"file_paths": list(keys), "color": color, **extra}


def composite_body(channels: list[dict], width: int, height: int, **extra) -> dict:
    """A composite of ``channels`` to ``width`` x ``height``, with other fields."""
    return {"channels": channels, "width": width, "height": height, **extra}
