"""The payload of each job kind, stage by stage, as typed dicts that mypy checks.

A payload travels as the envelope's JSON ``payload`` object; each stage reads the
shape the stage before it wrote. These types name those shapes, so a handler that
reads a field the previous stage never writes fails the type check, not a job::

    chat     embedder ChatQuery ─► retriever ChatVector ─► generator ChatHits
             (with history: generator ChatQuery first, which condenses the question)
    search   embedder SearchQuery ─► retriever SearchVector ─► result SearchResult
    ingest   embedder IngestUpload ─► (split into) embedder IngestPart ─► retriever IngestPart
    delete   retriever DeleteDocument

``view`` gives a stage its typed view of an envelope's payload; it does not copy or
validate (the envelope was validated where it entered the process).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, TypeVar, cast

from libs.common.envelope import Envelope


class Turn(TypedDict):
    role: str
    content: str


class AnswerCacheEntry(TypedDict):
    """Where the generator stores a successful answer (``constants.ANSWER_CACHE_PAYLOAD_FIELD``)."""

    key: str
    ttl_s: int


class SearchQuery(TypedDict):
    query: str
    top_k: int


class SearchVector(SearchQuery):
    # The query's embedding (``vectors.encode_vector``).
    vector: str


class SearchResult(TypedDict):
    hits: list[dict[str, Any]]


class ChatQuery(TypedDict):
    question: str
    # What is embedded and searched for: the question, or its standalone rewrite.
    query: str
    top_k: int
    history: NotRequired[list[Turn]]
    # Set once the generator has rewritten a follow-up as a standalone question.
    condensed: NotRequired[bool]
    answer_cache: NotRequired[AnswerCacheEntry]


class ChatVector(ChatQuery):
    vector: str


class ChatHits(ChatQuery):
    hits: list[dict[str, Any]]


class IngestUpload(TypedDict):
    """An upload waiting to be parsed: its bytes are in the document's blob key."""

    document_id: str
    filename: str
    size: int
    replace: NotRequired[bool]


class IngestPart(TypedDict):
    """Up to ``ingest_part_chunks`` chunks of a parsed document (with vectors once embedded)."""

    document_id: str
    filename: str
    replace: NotRequired[bool]
    pages: int
    part: int
    parts: int
    chunks_total: int
    chunks: list[dict[str, Any]]


class DeleteDocument(TypedDict):
    document_id: str


P = TypeVar(
    "P", ChatQuery, ChatVector, ChatHits, SearchQuery, SearchVector, IngestUpload, IngestPart, DeleteDocument
)


def view(env: Envelope, shape: type[P]) -> P:
    """The envelope's payload, typed as the shape the current stage reads."""
    return cast(P, env.payload)
