"""The IS stage's providers: where outside information about a query comes from.

`local` retrieves from the knowledge base (verified records only); `http` calls a search API the platform
runs (POST {"query", "top_k"} → {"docs": [{"id", "title", "text", "url"?, "score"?}]}); `none` finds nothing.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from armed.domain import WebDoc
from armed.knowledge.base import KnowledgeBase
from armed.settings import SearchSettings


class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, top_k: int) -> list[WebDoc]: ...


class NoSearch:
    name = "none"

    async def search(self, query: str, top_k: int) -> list[WebDoc]:
        return []


class LocalKnowledgeSearch:
    """Retrieval over the knowledge base's records (BM25 over character bigrams, built at load)."""

    name = "local"

    def __init__(self, kb: KnowledgeBase, max_doc_chars: int = 600) -> None:
        self._kb = kb
        self._max = max_doc_chars

    async def search(self, query: str, top_k: int) -> list[WebDoc]:
        docs = self._kb.search(query, top_k=top_k)
        return [d.model_copy(update={"text": d.text[: self._max]}) for d in docs]


class HttpSearch:
    """A platform search API. Its answers are untrusted and bounded like merchant text."""

    name = "http"

    def __init__(self, url: str, max_doc_chars: int = 600, timeout_s: float = 5.0) -> None:
        self._url = url
        self._max = max_doc_chars
        self._timeout = timeout_s

    async def search(self, query: str, top_k: int) -> list[WebDoc]:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            resp = await client.post(self._url, json={"query": query, "top_k": top_k})
            resp.raise_for_status()
            payload = resp.json()
        rows = payload.get("docs") if isinstance(payload, dict) else None
        if not isinstance(rows, list):
            raise ValueError("search API answer has no 'docs' list")
        docs = []
        for i, row in enumerate(rows[:top_k]):
            if not isinstance(row, dict) or not row.get("title"):
                continue
            docs.append(
                WebDoc(
                    id=str(row.get("id", i)),
                    source="http",
                    title=str(row["title"])[:200],
                    text=str(row.get("text", ""))[: self._max],
                    url=str(row["url"])[:500] if row.get("url") else None,
                    score=float(row.get("score", 0.0) or 0.0),
                )
            )
        return docs


def build_search(settings: SearchSettings, kb: KnowledgeBase, timeout_s: float) -> SearchProvider:
    if settings.provider == "local":
        return LocalKnowledgeSearch(kb, settings.max_doc_chars)
    if settings.provider == "http":
        assert settings.url  # settings validation guarantees it
        return HttpSearch(settings.url, settings.max_doc_chars, timeout_s)
    return NoSearch()
