"""Pages to overlapping, page-accurate chunks.

Chunks never cross a page (``page == page_end``), so a citation names the one page
the text came from, and ``page_text[char_start:char_end] == chunk.text`` exactly.
Within a page, a chunk ends at a paragraph or sentence boundary where one lies in
the second half of the window, else after ``size_words`` words; the next chunk
starts about ``overlap_words`` words earlier, at a sentence start when one is near.
Markdown is first cut into sections at headings, each chunk carrying its heading
path ("Intro > Setup"); chunks do not cross sections either. Pages that bring
their own sections (DOCX, HTML) are cut the same way.

Token-aware mode: given the embedding model's ``count_tokens`` and its
``max_tokens``, no chunk counts more than ``max_tokens`` tokens. Each sentence is
counted once and its count spread over its words by length; windows are sized
with those estimates (``size_tokens``, ``overlap_tokens``) and every chunk is
counted once more before it is kept, shrunk to an earlier sentence or word
boundary if it is still too long. A single word over the limit is cut into
pieces by characters. The windows themselves come from :mod:`.windows`.

Each chunk carries its ``context`` (:mod:`.structure`): the document's title and
heading path, then any table header or list lead-in its text continues. The model
embeds ``context + "\n" + text``; in token-aware mode that whole text fits
``max_tokens`` (a context is cut to half of it at most). Contents and index pages
(``Page.kind``) make no chunks, unless the document has nothing else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from libs.common.models import Chunk
from services.embedder import structure
from services.embedder.parsing import Page, Section, is_markdown
from services.embedder.windows import Prefix, TokenCounter, TokenLimits, longest_prefix, spans

logger = logging.getLogger(__name__)

# An ATX heading's opening: up to 3 spaces, 1 to 6 "#", then a space or tab. The rest
# of the line is read by _heading, not by one pattern: a lazy title before an optional
# closing sequence backtracks quadratically on a long run of spaces (a 64 KB line held
# the embedder for a minute).
_HEADING_OPEN = re.compile(r" {0,3}(#{1,6})[ \t]")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def chunk_pages(
    pages: Sequence[Page],
    document_id: str,
    filename: str,
    size_words: int,
    overlap_words: int,
    *,
    count_tokens: TokenCounter | None = None,
    max_tokens: int | None = None,
    size_tokens: int | None = None,
    overlap_tokens: int | None = None,
) -> list[Chunk]:
    """Chunks of at most ``size_words`` words, numbered 0..n-1 across the document.

    With ``count_tokens`` (the embedding model's tokenizer, special tokens not
    counted) ``max_tokens`` is required and no chunk counts more than that; windows
    then hold about ``size_tokens`` tokens (default ``max_tokens``, never more) and
    overlap by about ``overlap_tokens`` tokens (default: ``overlap_words`` words).
    The word limit still applies: pass ``size_words`` at least ``size_tokens`` to
    size by tokens alone (a word is at least one token).

    An overlap not smaller than the chunk size is cut to half the size (with a
    warning); ``ValueError`` for sizes below 1 or a negative overlap.
    """
    size_words, overlap_words = _checked("words", size_words, overlap_words)
    tokens: TokenLimits | None = None
    if count_tokens is not None:
        if max_tokens is None or max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1 with count_tokens, got {max_tokens}")
        size = max_tokens if size_tokens is None else min(size_tokens, max_tokens)
        overlap = None
        if overlap_tokens is not None:
            size, overlap = _checked("tokens", size, overlap_tokens)
        tokens = TokenLimits(count_tokens, max_tokens, size, overlap)
    markdown = is_markdown(filename)
    title = structure.title(filename)
    evidence = _evidence(pages)
    leads = structure.document_leads(
        [p.text if keep else None for p, keep in zip(pages, evidence, strict=True)]
    )
    chunks: list[Chunk] = []
    for page, keep, page_leads in zip(pages, evidence, leads, strict=True):
        if not keep:
            continue
        if page.sections:
            sections: Sequence[Section] = page.sections
        elif markdown:
            sections = _markdown_sections(page.text)
        else:
            sections = [Section(0, len(page.text), "")]
        for section in sections:
            contexts = _Contexts(title, section, page_leads, tokens)
            found = spans(
                page.text,
                section.start,
                section.end,
                size_words,
                overlap_words,
                tokens=tokens,
                prefix=contexts.prefix if tokens is not None else None,
            )
            for start, end in found:
                chunks.append(
                    Chunk(
                        document_id=document_id,
                        filename=filename,
                        chunk_index=len(chunks),
                        text=page.text[start:end],
                        page=page.number,
                        page_end=page.number,
                        char_start=start,
                        char_end=end,
                        heading=section.heading,
                        context=contexts.at(start),
                    )
                )
    logger.debug("chunked %s: %d pages, %d chunks", filename, len(pages), len(chunks))
    return chunks


def _evidence(pages: Sequence[Page]) -> list[bool]:
    """Which pages make chunks: body pages (not contents or index pages), or every page
    when no body page has text (a document that is all index is still searchable)."""
    body = [page.kind == "body" for page in pages]
    if any(keep and page.text.strip() for keep, page in zip(body, pages, strict=True)):
        return body
    return [True] * len(pages)


class _Contexts:
    """The contexts of chunks of one section, by where they start (cached per lead)."""

    def __init__(
        self, title: str, section: Section, leads: structure.PageLeads, tokens: TokenLimits | None
    ) -> None:
        self.title, self.section, self.leads, self.tokens = title, section, leads, tokens
        self._by_lead: dict[str, str] = {}

    def at(self, offset: int) -> str:
        lead = self.leads.at(offset, self.section.start)
        found = self._by_lead.get(lead)
        if found is None:
            found = self._by_lead[lead] = self._capped(lead)
        return found

    @property
    def prefix(self) -> Prefix:
        return lambda offset: structure.embedded_text("", self.at(offset))

    def _capped(self, lead: str) -> str:
        """The context, cut in token mode to leave at least half of ``max_tokens`` to the
        chunk's text: outer headings go first, then the lead, then characters."""
        title, heading = self.title, self.section.heading
        if self.tokens is None:
            return structure.context(title, heading, lead)
        count, budget = self.tokens.count, self.tokens.max_tokens // 2
        for candidate_lead in (lead, ""):
            for drop in range(structure.headings(heading) + 1):
                found = structure.context(title, heading, candidate_lead, drop=drop)
                if count(structure.embedded_text("", found)) <= budget:
                    return found
        if budget < 2:
            return ""
        return found[: longest_prefix(found, 0, len(found), count, budget - 1)]


def _checked(unit: str, size: int, overlap: int) -> tuple[int, int]:
    if size < 1:
        raise ValueError(f"size_{unit} must be at least 1, got {size}")
    if overlap < 0:
        raise ValueError(f"overlap_{unit} must not be negative, got {overlap}")
    if overlap >= size:
        logger.warning(
            "chunk overlap of %d %s is not smaller than the chunk size of %d; using %d",
            overlap,
            unit,
            size,
            size // 2,
        )
        overlap = size // 2
    return size, overlap


def _heading(line: str) -> tuple[int, str] | None:
    """An ATX heading's level and title ("## Setup ##" is 2, "Setup"), else None. A
    closing run of "#" counts only after a space or tab ("# C#" keeps its "#")."""
    opening = _HEADING_OPEN.match(line)
    if opening is None:
        return None
    title = line[opening.end() :].strip(" \t")
    bare = title.rstrip("#")
    if not bare:
        title = ""
    elif bare != title and bare[-1] in " \t":
        title = bare.rstrip(" \t")
    return len(opening.group(1)), title.strip()


def _markdown_sections(text: str) -> list[Section]:
    """``text`` cut before each ATX heading (outside code fences), with heading paths.

    A heading with nothing but other headings under it joins the next section, so
    "# Guide\\n## Setup\\ntext" is one section headed "Guide > Setup".
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    start, heading, has_body = 0, "", False
    fence = ""
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        found = None if fence else _heading(stripped)
        if found:
            if has_body:
                sections.append(Section(start, offset, heading))
                start, has_body = offset, False
            level, text_of_heading = found
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, text_of_heading))
            heading = " > ".join(title for _, title in path if title)
        else:
            fence_match = _FENCE.match(stripped)
            if fence_match:
                marker = fence_match.group(1)
                if not fence:
                    fence = marker
                elif marker[0] == fence[0] and len(marker) >= len(fence):
                    fence = ""
            has_body = has_body or bool(stripped.strip())
        offset += len(line)
    sections.append(Section(start, len(text), heading))
    return sections
