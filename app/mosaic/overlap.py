"""Spatially disconnected groups of fields (CONTRACT-HEAD §10.6 ``overlap_warning``).

Two files overlap when the angular distance between their centres is less
than the sum of their instruments' field-of-view radii; the groups are the
connected components of that relation. Pure functions; vectorised over all
pairs (500 files are 124 750 pairs).
"""

from __future__ import annotations

import numpy as np
from astropy.coordinates import angular_separation

from app.processing.instruments import field_radius_arcmin


def overlap_groups(
    ra_deg: list[float], dec_deg: list[float], instruments: list[str | None]
) -> list[list[int]]:
    """Connected groups of file indices, each in input order, ordered by their first index."""
    n = len(ra_deg)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n >= 2:
        ra = np.radians(np.asarray(ra_deg, dtype=float))
        dec = np.radians(np.asarray(dec_deg, dtype=float))
        radius = np.array([field_radius_arcmin(inst) for inst in instruments])
        i, j = np.triu_indices(n, k=1)
        # astropy's angular_separation is the Vincenty formula.
        sep = np.degrees(angular_separation(ra[i], dec[i], ra[j], dec[j])) * 60.0
        for a, b in zip(
            i[sep < radius[i] + radius[j]], j[sep < radius[i] + radius[j]], strict=True
        ):
            ra_, rb_ = root(int(a)), root(int(b))
            if ra_ != rb_:
                parent[max(ra_, rb_)] = min(ra_, rb_)
    groups: dict[int, list[int]] = {}
    for index in range(n):
        groups.setdefault(root(index), []).append(index)
    return sorted(groups.values(), key=lambda g: g[0])


def overlap_warning(
    keys: list[str], ra_deg: list[float], dec_deg: list[float], instruments: list[str | None]
) -> str | None:
    """The §10.6 text when the files form more than one group, else None."""
    if len(keys) < 2:
        return None
    groups = overlap_groups(ra_deg, dec_deg, instruments)
    if len(groups) < 2:
        return None
    lines = [
        f"These {len(keys)} files form {len(groups)} spatially disconnected groups "
        "\u2014 the composite may have large gaps."
    ]
    for number, group in enumerate(groups, start=1):
        names = [keys[i].rsplit("/", 1)[-1] for i in group]
        insts = sorted({(instruments[i] or "UNKNOWN").upper() for i in group})
        lines.append(f"Group {number}: {', '.join(n for n in names if n)} ({', '.join(insts)})")
    lines.append("Consider compositing each group separately.")
    return "\n".join(lines)
