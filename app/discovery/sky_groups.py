"""Groups of pointings on the sky, in n log n (CONTRACT-HEAD §10.7 spatial rules).

* :func:`linked_groups` joins two points when their angular distance is below a
  threshold that may depend on both (the sum of two fields of view) and returns
  the connected components (single linkage).
* :func:`spread_exceeds` says whether any two points are farther apart than a limit.

Both work on unit vectors with k-d trees and a grid whose cells are small enough
that every pair inside one cell is linked, so a crowd of thousands of pointings on
one field costs a few cells, not millions of pairs: the work grows with the number
of points, never with its square (issue: hostile input on the event loop).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from astropy.coordinates import angular_separation
from scipy.spatial import cKDTree


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def chord(arcmin: float) -> float:
    """Straight-line distance between unit vectors ``arcmin`` apart on the sphere."""
    return 2.0 * math.sin(math.radians(arcmin / 60.0) / 2.0)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def linked_groups(
    ra_deg: list[float],
    dec_deg: list[float],
    classes: list[int],
    threshold_arcmin: dict[tuple[int, int], float],
) -> list[list[int]]:
    """Single-linkage groups of points (indices in input order, groups ordered by their
    first index). Points i and j are linked when their separation is below
    ``threshold_arcmin[(classes[i], classes[j])]`` (symmetric)."""
    n = len(ra_deg)
    if n == 0:
        return []
    xyz = unit_vectors(np.asarray(ra_deg, float), np.asarray(dec_deg, float))
    cls = np.asarray(classes, dtype=int)
    present = sorted(set(cls.tolist()))
    limits = {(a, b): chord(threshold_arcmin[(a, b)]) for a in present for b in present}
    smallest, largest = min(limits.values()), max(limits.values())
    # Any two points in one cell are closer than the smallest threshold: all linked.
    cell = smallest / math.sqrt(3.0) * (1 - 1e-9)
    keys = np.floor(xyz / cell).astype(np.int64)
    cells: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for index, key in enumerate(map(tuple, keys)):
        cells[key].append(index)
    uf = _UnionFind(n)
    for members in cells.values():
        for other in members[1:]:
            uf.union(members[0], other)
    names = list(cells)
    if len(names) > 1:
        centres = (np.array(names, dtype=float) + 0.5) * cell
        reach = largest + cell * math.sqrt(3.0)
        trees: dict[tuple[tuple[int, int, int], int], tuple[cKDTree | None, list[int]]] = {}

        def tree_of(name: tuple[int, int, int], klass: int):
            key = (name, klass)
            if key not in trees:
                idx = [i for i in cells[name] if cls[i] == klass]
                trees[key] = (cKDTree(xyz[idx]), idx) if idx else (None, [])
            return trees[key]

        for a, b in cKDTree(centres).query_pairs(reach):
            ca, cb = names[a], names[b]
            if uf.find(cells[ca][0]) == uf.find(cells[cb][0]):
                continue
            linked = False
            for ka in present:
                ia = [i for i in cells[ca] if cls[i] == ka]
                if not ia:
                    continue
                for kb in present:
                    tree, ib = tree_of(cb, kb)
                    if tree is None:
                        continue
                    dist, _ = tree.query(xyz[ia], k=1, distance_upper_bound=limits[(ka, kb)])
                    if np.isfinite(dist).any():
                        linked = True
                        break
                if linked:
                    break
            if linked:
                uf.union(cells[ca][0], cells[cb][0])
    groups: dict[int, list[int]] = {}
    for index in range(n):
        groups.setdefault(uf.find(index), []).append(index)
    return sorted(groups.values(), key=lambda g: g[0])


#: Points compared pairwise below this many; above, only the extremes in many directions.
BRUTE_FORCE = 400
DIRECTIONS = 64


def spread_exceeds(ra_deg: list[float], dec_deg: list[float], limit_arcsec: float) -> bool:
    """True when two of the points are more than ``limit_arcsec`` apart (Vincenty)."""
    n = len(ra_deg)
    if n < 2:
        return False
    ra = np.radians(np.asarray(ra_deg, float))
    dec = np.radians(np.asarray(dec_deg, float))
    if n > BRUTE_FORCE:
        # The farthest pair lies on the convex hull; the extreme points along many
        # directions of the tangent plane are hull points (enough for a threshold test).
        xyz = unit_vectors(np.degrees(ra), np.degrees(dec))
        centre = xyz.mean(axis=0)
        centre /= np.linalg.norm(centre)
        east = np.cross([0.0, 0.0, 1.0], centre)
        if np.linalg.norm(east) < 1e-12:
            east = np.array([1.0, 0.0, 0.0])
        east /= np.linalg.norm(east)
        north = np.cross(centre, east)
        plane = np.column_stack([xyz @ east, xyz @ north])
        angles = np.linspace(0, math.pi, DIRECTIONS, endpoint=False)
        along = plane @ np.vstack([np.cos(angles), np.sin(angles)])
        keep = np.unique(np.concatenate([along.argmin(axis=0), along.argmax(axis=0)]))
        ra, dec = ra[keep], dec[keep]
    i, j = np.triu_indices(ra.size, k=1)
    sep = angular_separation(ra[i], dec[i], ra[j], dec[j])
    return bool(np.degrees(np.max(sep)) * 3600.0 > limit_arcsec)
