"""The budget verdict of a composite (CONTRACT-HEAD §10.1 "The budget verdict", Decision 13).

Pure functions. The verdict answers one question: can this request alone be
rendered within the memory limit? It is computed from this engine's own cost
model (:class:`~app.composite.compositor.CostModel`, the same numbers the
worker pool admits by), against the limit: ``MAX_COMPOSITE_MEMORY_BYTES`` when
set, never more than ``ENGINE_MEMORY_BUDGET_BYTES``. So a request the verdict
lets through is never refused by admission for its size (only made to wait, or
429, while the memory is busy with other requests).

* ``ok``: the grid fits as it is.
* Otherwise the grid shrinks by the side factor f that makes it fit:
  ``warn`` when f >= ``COMPOSITE_DOWNSCALE_FAIL_THRESHOLD``; below it,
  ``forced`` with ``allow_force_downscale``, else ``fail`` (413 on a render).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

BudgetStatus = Literal["ok", "warn", "forced", "fail"]


@dataclass(frozen=True)
class BudgetVerdict:
    status: BudgetStatus
    original_shape: tuple[int, int]  # (H, W) of the grid the request asks for
    output_shape: tuple[int, int]  # (H, W) of the grid that fits
    side_factor: float
    detail: str
    limit_bytes: int
    threshold: float

    @property
    def downscaled(self) -> bool:
        return self.output_shape != self.original_shape

    def headers(self) -> dict[str, str]:
        """The ``X-Composite-*`` budget headers of a render on this verdict's grid."""
        out: dict[str, str] = {"X-Composite-Budget-Status": self.status}
        if self.downscaled:
            out["X-Composite-Was-Downscaled"] = "true"
            out["X-Composite-Original-Shape"] = shape_text(self.original_shape)
            out["X-Composite-Output-Shape"] = shape_text(self.output_shape)
            out["X-Composite-Side-Factor"] = f"{self.side_factor:.3f}"
        return out


def shape_text(shape: tuple[int, int]) -> str:
    return f"{int(shape[0])},{int(shape[1])}"


def shrink_detail(
    factor: float,
    new_shape: tuple[int, int],
    shape: tuple[int, int],
    limit_bytes: int,
    threshold: float,
) -> str:
    """The §10.1 detail text, word for word (sizes width x height)."""
    (new_h, new_w), (h, w) = new_shape, shape
    return (
        f"Composite output would shrink to {round(factor * 100)}% of requested side "
        f"length ({new_w}x{new_h} from {w}x{h}). Memory limit MAX_COMPOSITE_MEMORY_BYTES "
        f"= {round(limit_bytes / 1e6)} MB; COMPOSITE_DOWNSCALE_FAIL_THRESHOLD = "
        f"{threshold:.2f}. To allow this composite: lower "
        "COMPOSITE_DOWNSCALE_FAIL_THRESHOLD, raise MAX_COMPOSITE_MEMORY_BYTES, or reduce "
        "inputs (fewer files / fewer channels)."
    )


def budget_verdict(
    shape: tuple[int, int],
    per_pixel: int,
    fixed: int,
    limit_bytes: int,
    threshold: float,
    allow_force_downscale: bool = False,
) -> BudgetVerdict:
    """The verdict for a grid of ``shape`` whose render costs ``per_pixel`` x pixels
    + ``fixed`` bytes, against ``limit_bytes``."""
    h, w = int(shape[0]), int(shape[1])
    pixels = h * w
    if per_pixel * pixels + fixed <= limit_bytes:
        return BudgetVerdict("ok", (h, w), (h, w), 1.0, "", limit_bytes, threshold)
    max_pixels = max(0, (limit_bytes - fixed) // max(1, per_pixel))
    factor = math.sqrt(max_pixels / pixels)
    new_shape = (max(1, math.floor(h * factor)), max(1, math.floor(w * factor)))
    detail = shrink_detail(factor, new_shape, (h, w), limit_bytes, threshold)
    if factor >= threshold:
        status: BudgetStatus = "warn"
    elif allow_force_downscale:
        status = "forced"
    else:
        status = "fail"
    return BudgetVerdict(status, (h, w), new_shape, factor, detail, limit_bytes, threshold)
