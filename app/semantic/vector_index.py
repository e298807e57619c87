"""An exact inner-product index of unit vectors, persisted atomically.

Vectors, ids and the embedded texts live in one ``index.npz`` under the
semantic data directory, written to a temporary file and renamed into place,
so a crash never leaves half an index. Search is one matrix-vector product
over every vector (exact, like FAISS ``IndexFlatIP``): 10,000 x 384 floats take
about a millisecond.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from app.storage.helpers import atomic_target

INDEX_FILE = "index.npz"


class VectorIndex:
    def __init__(self, directory: str | os.PathLike, dim: int = 384) -> None:
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
            with np.load(self.path, allow_pickle=False) as data:
                self.vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
                self.ids = [str(v) for v in data["ids"]]
                self.texts = [str(v) for v in data["texts"]]
            self._mtime = mtime

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_target(self.path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, vectors=self.vectors,
                         ids=np.array(self.ids, dtype=str),
                         texts=np.array(self.texts, dtype=str))
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
            self.vectors = np.concatenate([self.vectors[keep],
                                           np.asarray(vectors, dtype=np.float32)[order]])
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
            return [(self.ids[i], float(scores[i]), self.texts[i]) for i in best
                    if scores[i] >= min_score]
