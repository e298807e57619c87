"""A reader of the composite progress stream that is as strict as the .NET one (§10.2)."""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field

import httpx
from PIL import Image

STAGES = {"queued", "mosaic", "reproject", "background_neutralize", "stretch", "combine", "encode"}
INDEXED = {"reproject", "stretch"}


@dataclass
class StreamResult:
    progress: list[dict] = field(default_factory=list)
    terminal: dict | None = None
    #: time.monotonic() at which each line (progress and terminal) arrived
    times: list[float] = field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        return [e["stage"] for e in self.progress]

    def image(self) -> Image.Image:
        assert self.terminal is not None and self.terminal["event"] == "complete"
        return Image.open(io.BytesIO(base64.b64decode(self.terminal["image_b64"], validate=True)))


def check_line(raw: str) -> dict:
    """One line as .NET reads it: a JSON object with the right types, or an assertion."""
    event = json.loads(raw)
    assert isinstance(event, dict), f"not a JSON object: {raw[:200]}"
    kind = event.get("event")
    assert isinstance(kind, str), raw[:200]
    if kind == "progress":
        assert event["stage"] in STAGES, event
        assert isinstance(event["message"], str) and event["message"], event
        if event["stage"] in INDEXED:
            assert type(event["index"]) is int and type(event["total"]) is int, event
            assert 1 <= event["index"] <= event["total"], event
            assert isinstance(event["filter"], str), event
        else:
            assert "index" not in event and "total" not in event, event
    elif kind == "complete":
        assert isinstance(event["image_b64"], str) and event["image_b64"], "empty image"
        base64.b64decode(event["image_b64"], validate=True)
        assert event["content_type"] in ("image/png", "image/jpeg"), event["content_type"]
        headers = event["headers"]
        assert isinstance(headers, dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()), headers
        assert all(k == k.lower() for k in headers), headers
    elif kind == "error":
        assert isinstance(event["detail"], str), event
        assert type(event["status_code"]) is int, event
        if event["status_code"] == 429:
            assert type(event["retry_after"]) is int, event
        else:
            assert "retry_after" not in event, event
    return event


def read_lines(response: httpx.Response, result: StreamResult, stop_after: int | None = None):
    """Read lines into ``result`` until the terminal event (or ``stop_after`` lines)."""
    for raw in response.iter_lines():
        if not raw:
            continue
        assert result.terminal is None, f"a line after the terminal event: {raw[:200]}"
        event = check_line(raw)
        result.times.append(time.monotonic())
        if event["event"] == "progress":
            result.progress.append(event)
        elif event["event"] in ("complete", "error"):
            result.terminal = event
        if stop_after is not None and len(result.times) >= stop_after:
            return result
    return result


def stream_composite(base: str, body: dict, timeout: float = 300.0) -> StreamResult:
    """POST the body to the stream route and read it to its end (200 required)."""
    result = StreamResult()
    with httpx.stream(
        "POST", base + "/composite/generate-nchannel-stream", json=body, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.read()[:500]
        assert response.headers["content-type"].startswith("application/x-ndjson")
        read_lines(response, result)
    assert result.terminal is not None, "the stream ended without a terminal event"
    return result
