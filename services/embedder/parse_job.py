"""One upload's parse, wherever it runs: bytes to chunks, within the document limits.

:func:`parse_and_chunk` is all of it: parse (``parsing.py``), chunk
(``chunking.py``) and check what a hostile file could blow up (characters of text,
chunks). It runs in a sandboxed child process (``sandbox.py``) or, for a tiny text
file, in the embedder itself; the same code gives the same chunks either way, so a
:class:`ParseJob` carries everything it needs and pickles: the limits and the
chunking, with the model's tokenizer as its JSON rather than as a live object.
Wall time and memory are the sandbox's limits; their messages are built here so
every failure names its setting and value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.errors import PermanentError
from libs.common.models import Chunk
from libs.common.settings import EmbedderSettings
from services.embedder.chunking import chunk_pages
from services.embedder.parsing import Page, parse_document

TIMEOUT_SETTING = "DOCUMIND_PARSE_TIMEOUT_S"
MEMORY_SETTING = "DOCUMIND_PARSE_MEMORY_MB"
CHUNKS_SETTING = "DOCUMIND_MAX_CHUNKS"

#: One chunk as it travels from the parser: (text, page, char_start, char_end, heading, context).
ChunkRow = tuple[str, int, int, int, str, str]


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """How to cut pages into chunks: in words, or in a tokenizer's tokens when it has one."""

    size_words: int
    overlap_words: int
    # A Hugging Face ``tokenizers`` JSON (the embedding model's): chunks are sized in its tokens.
    tokenizer_json: str | None = None
    max_tokens: int = 0
    size_tokens: int = 0
    overlap_tokens: int = 0

    @classmethod
    def for_backend(cls, settings: EmbedderSettings, embedder: object) -> ChunkSpec:
        """Token-sized chunks when the embedding backend brings its tokenizer, else words."""
        tokenizer_json = getattr(embedder, "tokenizer_json", None)
        max_tokens = getattr(embedder, "max_text_tokens", None)
        if isinstance(tokenizer_json, str) and isinstance(max_tokens, int) and max_tokens > 0:
            size = min(settings.chunk_size_tokens, max_tokens)
            # Every word is at least one token: the word limit never binds first.
            return cls(size, 0, tokenizer_json, max_tokens, size, settings.chunk_overlap_tokens)
        return cls(settings.chunk_size_words, settings.chunk_overlap_words)


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """What one upload's parse may take; over any, its document fails naming the limit."""

    max_pages: int
    max_unpacked_bytes: int
    max_chars: int
    max_chunks: int
    timeout_s: float
    memory_mb: int

    @classmethod
    def from_settings(cls, s: EmbedderSettings) -> ParseLimits:
        return cls(
            max_pages=s.max_pages,
            max_unpacked_bytes=s.max_unpacked_bytes,
            max_chars=s.max_extracted_chars,
            max_chunks=s.max_chunks,
            timeout_s=s.parse_timeout_s,
            memory_mb=s.parse_memory_mb,
        )

    def over_time(self) -> PermanentError:
        return PermanentError(f"parsing took longer than {self.timeout_s:g} s ({TIMEOUT_SETTING})")

    def over_memory(self) -> PermanentError:
        return PermanentError(f"parsing needed more than {self.memory_mb} MB of memory ({MEMORY_SETTING})")

    def crashed(self, how: str) -> PermanentError:
        """The parser died without an answer: a malformed file, or memory it could not get."""
        return PermanentError(
            f"parsing crashed ({how}): the file is malformed or needed more than "
            f"{self.memory_mb} MB of memory ({MEMORY_SETTING})"
        )


@dataclass(frozen=True, slots=True)
class ParseJob:
    """Everything a parse needs but the upload's bytes."""

    filename: str
    chunking: ChunkSpec
    limits: ParseLimits


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed upload: its page count, chunks in order, and each page's text (what the
    chunks' ``char_start``/``char_end`` index; kept for the viewer: ``put_text``)."""

    pages: int
    chunks: list[ChunkRow]
    texts: list[str]

    def chunk_dicts(self, document_id: str, filename: str) -> list[dict[str, Any]]:
        """The chunks as :class:`~libs.common.models.Chunk` dicts (a chunk never crosses a page)."""
        return [
            {
                "document_id": document_id,
                "filename": filename,
                "chunk_index": n,
                "text": text,
                "page": page,
                "page_end": page,
                "char_start": start,
                "char_end": end,
                "heading": heading,
                "context": context,
            }
            for n, (text, page, start, end, heading, context) in enumerate(self.chunks)
        ]


def parse_and_chunk(job: ParseJob, data: bytes) -> Parsed:
    """The upload's pages and chunks; :class:`PermanentError` for a file that cannot be
    read, has no text, or passes the character or chunk limit."""
    limits = job.limits
    pages = parse_document(
        job.filename,
        data,
        limits.max_pages,
        max_unpacked_bytes=limits.max_unpacked_bytes,
        max_chars=limits.max_chars,
    )
    chunks = chunk(job.chunking, pages, "", job.filename)
    if not chunks:
        raise PermanentError("no extractable text")
    if len(chunks) > limits.max_chunks:
        raise PermanentError(
            f"the document makes {len(chunks):,} chunks, more than {limits.max_chunks:,} ({CHUNKS_SETTING})"
        )
    rows = [(c.text, c.page, c.char_start, c.char_end, c.heading, c.context) for c in chunks]
    return Parsed(len(pages), rows, [page.text for page in pages])


def chunk(spec: ChunkSpec, pages: Sequence[Page], document_id: str, filename: str) -> list[Chunk]:
    """``pages`` cut as ``spec`` says."""
    if spec.tokenizer_json is None:
        return chunk_pages(pages, document_id, filename, spec.size_words, spec.overlap_words)
    return chunk_pages(
        pages,
        document_id,
        filename,
        size_words=spec.size_words,
        overlap_words=spec.overlap_words,
        count_tokens=token_counter(spec.tokenizer_json),
        max_tokens=spec.max_tokens,
        size_tokens=spec.size_tokens,
        overlap_tokens=spec.overlap_tokens,
    )


@functools.lru_cache(maxsize=2)
def token_counter(tokenizer_json: str) -> Callable[[str], int]:
    """Tokens of a text, special tokens not counted (built once per process and tokenizer)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.no_truncation()

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count
