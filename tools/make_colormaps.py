"""Regenerate app/processing/colormaps.npz from matplotlib's colormaps.

The engine renders without matplotlib; it ships the 256-entry lookup tables
of the colormaps the contract names, taken from matplotlib once by this
script (a developer tool: ``.venv/bin/python tools/make_colormaps.py``).
The test suite checks the shipped tables against matplotlib again.
"""

from pathlib import Path

import matplotlib
import numpy as np

NAMES = ("gray", "inferno", "magma", "viridis", "plasma", "hot", "cool", "rainbow", "jet")


def main() -> None:
    tables = {}
    for name in NAMES:
        rgba = matplotlib.colormaps[name].resampled(256)(np.arange(256))
        tables[name] = np.round(rgba[:, :3] * 255).astype(np.uint8)
    out = Path(__file__).resolve().parent.parent / "app" / "processing" / "colormaps.npz"
    np.savez_compressed(out, **tables)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
