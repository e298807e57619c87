"""An exact inner-product index of unit vectors, persisted atomically.

Vectors, ids and the embedded texts live in one ``index.npz`` under the
semantic data directory, written to a temporary file and renamed into place,
so a crash never leaves half an index. Ids and texts are stored as one UTF-8
blob each with offsets (numpy's string arrays would pad every entry to the
longest one). An index file that cannot be read is moved aside with a warning
and the index starts empty: the engine always starts. Search is one
matrix-vector product over every vector (exact, like FAISS ``IndexFlatIP``):
10,000 x 384 floats take about a millisecond.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from app.storage.helpers import atomic_target

INDEX_FILE = "index.npz"
logger = logging.getLogger(__name__)


def pack_strings(name: str, values: list[str]) -> dict[str, np.ndarray]:
    """The arrays that store ``values`` as ``name``: one UTF-8 blob (``<name>_blob``)
    and the end offset of each string (``<name>_ends``), without padding."""
    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return {f"{name}_blob": np.frombuffer(b"".join(encoded), dtype=np.uint8), f"{name}_ends": ends}


def unpack_strings(arrays: Mapping[str, np.ndarray], name: str) -> list[str]:
    """The strings :func:`pack_strings` stored as ``name`` in ``arrays``."""
    data, ends = arrays[f"{name}_blob"].tobytes(), arrays[f"{name}_ends"]
    starts = np.concatenate([[0], ends[:-1]]) if ends.size else ends
    return [data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends, strict=True)]


class VectorIndex:
    def __init__(self, directory: str | os.PathLike[str], dim: int = 384) -> None:
        self.directory = Path(directory)
        self.path = self.directory / INDEX_FILE
        self.dim = dim
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self.ids: list[str] = []
        self.texts: list[str] = []
        self._mtime: int | None = None
        self._lock = threading.RLock()
        self.reload()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def file_exists(self) -> bool:
        return self.path.exists()

    def reload(self) -> None:
        """Read the file if it changed on disk (another process may have written it)."""
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                return
            if mtime == self._mtime:
                return
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
                    if "id_blob" in data:
                        ids, texts = unpack_strings(data, "id"), unpack_strings(data, "text")
                    else:  # the first layout: padded string arrays
                        ids = [str(v) for v in data["ids"]]
                        texts = [str(v) for v in data["texts"]]
                if (
                    vectors.ndim != 2
                    or vectors.shape[1] != self.dim
                    or not (len(ids) == len(texts) == vectors.shape[0])
                ):
                    raise ValueError("inconsistent arrays")
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                self._move_aside(exc)
                return
            self.vectors, self.ids, self.texts = vectors, ids, texts
            self._mtime = mtime

    def _move_aside(self, exc: BaseException) -> None:
        """Keep an unreadable index file for inspection and start with an empty index."""
        aside = self.path.with_name(f"{INDEX_FILE}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(self.path, aside)
        except OSError:
            aside = self.path
        logger.warning(
            "The semantic index %s could not be read (%s: %s); it was moved to %s "
            "and the index starts empty",
            self.path,
            type(exc).__name__,
            exc,
            aside,
        )
        self.vectors = np.zeros((0, self.dim), dtype=np.float32)
        self.ids, self.texts, self._mtime = [], [], None

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_target(self.path) as tmp:
            with open(tmp, "wb") as handle:
                arrays: dict[str, Any] = {
                    "vectors": self.vectors,
                    **pack_strings("id", self.ids),
                    **pack_strings("text", self.texts),
                }
                np.savez(handle, **arrays)
        self._mtime = self.path.stat().st_mtime_ns

    def upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str]) -> None:
        """Replace the vectors of ``ids`` (old ones removed), append, and save."""
        with self._lock:
            self.reload()
            replaced = set(ids)
            keep = [i for i, v in enumerate(self.ids) if v not in replaced]
            # The last occurrence of an id within one batch wins.
            latest = {v: i for i, v in enumerate(ids)}
            order = sorted(latest.values())
            self.vectors = np.concatenate(
                [self.vectors[keep], np.asarray(vectors, dtype=np.float32)[order]]
            )
            self.ids = [self.ids[i] for i in keep] + [ids[i] for i in order]
            self.texts = [self.texts[i] for i in keep] + [texts[i] for i in order]
            self.save()

    def search(self, query: np.ndarray, top_k: int, min_score: float):
        """(id, score, text) of the best ``top_k`` vectors with score >= min_score."""
        with self._lock:
            self.reload()
            if not self.ids:
                return []
            scores = self.vectors @ np.asarray(query, dtype=np.float32)
            k = min(top_k, scores.size)
            best = np.argpartition(-scores, k - 1)[:k]
            best = best[np.argsort(-scores[best], kind="stable")]
            return [
                (self.ids[i], float(scores[i]), self.texts[i])
                for i in best
                if scores[i] >= min_score
            ]
