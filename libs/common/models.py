"""Data shapes that cross service boundaries inside envelope payloads."""

from __future__ import annotations

from pydantic import BaseModel


class Chunk(BaseModel):
    """A piece of a document, small enough for the embedding model."""

    document_id: str
    filename: str
    chunk_index: int
    text: str
    # Physical page, 1-based; page_end differs when the chunk spans pages.
    page: int = 1
    page_end: int = 1
    char_start: int = 0
    char_end: int = 0
    heading: str = ""
    # What the chunk's text is read under, for the embedding model and keyword search:
    # the document's title and heading path ("bash > Shell Builtin Commands"), then on
    # a line of its own any table header or list lead-in the text continues. Never
    # part of ``text`` (which stays the page's exact slice); "" when there is none.
    context: str = ""


class Hit(BaseModel):
    """A chunk returned by a search, with its similarity score."""

    document_id: str
    filename: str
    page: int
    score: float
    text: str
    chunk_index: int = 0
    page_end: int | None = None
    # Where the chunk's text is in its page's text (``page_text[char_start:char_end] ==
    # text``); None for a chunk stored without them.
    char_start: int | None = None
    char_end: int | None = None
    # Evidence score in [0, 1]: the estimated probability that this hit is evidence for
    # the question, from its place in the fused (dense + BM25) ranking and its cosine
    # (services/retriever/fusion.py says how). ``score`` stays the cosine. None from a
    # retriever that predates it.
    relevance: float | None = None


class Citation(BaseModel):
    n: int
    document_id: str
    filename: str
    page: int
    snippet: str
    score: float
    # The cited passage in the page's text (GET /v1/documents/{id}/text): the snippet's
    # span when it is found in its chunk, else the chunk's; None when not known.
    char_start: int | None = None
    char_end: int | None = None
