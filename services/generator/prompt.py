"""Numbered sources, the chat prompt, and citations parsed back out of an answer.

Sources are the evidence hits in the order given, numbered from 1; an answer cites
source ``n`` as ``[n]`` and each citation's ``n`` is that number.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

from libs.common.models import Citation, Hit
from services.generator.text import clip, content_terms, locate, split_sentences

logger = logging.getLogger(__name__)

# The answer given when no retrieved text is relevant enough to answer from.
NOTHING_RELEVANT = (
    "I could not find anything relevant to that question in the collection, "
    "so I cannot answer it from the documents."
)
# What the LLM is told to reply when its sources do not answer the question: a fixed
# phrase, so that the reply can be recognised as an abstention (``says_not_found``).
NOT_FOUND = "I could not find this in your documents."

SNIPPET_MAX_CHARS = 300

SYSTEM_PROMPT = (
    "You answer questions about the user's documents using only the numbered sources given "
    "in the user's message.\n"
    "- Use only facts stated in the sources; do not use outside knowledge or guess.\n"
    "- Cite every statement with the number of the source it comes from, in square brackets, "
    "like [1] or [2][3]. Cite only sources that support the statement.\n"
    f'- If the sources do not contain the answer, reply exactly "{NOT_FOUND}" and nothing '
    "else, citing nothing.\n"
    "- Be concise and answer in the language of the question."
)

# "[2]", "[1, 3]", "[1-3]", "[Source 2]", "[sources 1 and 2]"; "[1][2]" is two matches.
_NUM = r"\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?"
_CITATION = re.compile(
    rf"\[\s*(?:sources?\s*)?({_NUM}(?:\s*(?:,|;|and|&)\s*{_NUM})*)\s*\]",
    re.IGNORECASE,
)
_PART = re.compile(r"(\d+)(?:\s*[-\u2013]\s*(\d+))?")
# A range longer than this is not a citation ("[1-2000]").
_MAX_RANGE = 20


def number_sources(hits: Sequence[Hit]) -> list[tuple[int, Hit]]:
    """``(n, hit)`` pairs, n from 1, in the order of ``hits``."""
    return [(n, hit) for n, hit in enumerate(hits, start=1)]


def _pages(hit: Hit) -> str:
    if hit.page_end is not None and hit.page_end != hit.page:
        return f"pages {hit.page}-{hit.page_end}"
    return f"page {hit.page}"


def format_source(n: int, hit: Hit) -> str:
    """Source ``n`` as the prompt shows it: a header line, then the text."""
    return f"[{n}] {hit.filename}, {_pages(hit)}\n{hit.text.strip()}"


# Between two sources in the prompt.
SOURCE_SEPARATOR = "\n\n"


def format_sources(hits: Sequence[Hit]) -> str:
    return SOURCE_SEPARATOR.join(format_source(n, hit) for n, hit in number_sources(hits))


def build_messages(question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    """OpenAI chat messages asking ``question`` about ``hits`` numbered 1..k."""
    user = f"Sources:\n\n{format_sources(hits)}\n\nQuestion: {question.strip()}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]


def cited_numbers(answer_text: str) -> list[int]:
    """Source numbers cited in ``answer_text``, each once, in order of first citation.

    Understands ``[n]``, ``[n, m]``, ``[n][m]``, ``[n-m]`` and ``[Source n]``.
    """
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(answer_text):
        for part in _PART.finditer(match.group(1)):
            low = int(part.group(1))
            high = int(part.group(2)) if part.group(2) else low
            if high < low or high - low > _MAX_RANGE:
                high = low
            for n in range(low, high + 1):
                if n > 0:
                    seen.setdefault(n, None)
    return list(seen)


def _citing_text(answer_text: str, n: int) -> str:
    """The parts of the answer that cite source ``n``: the text before each citation of it,
    back to the previous citation (``[1][2]`` share the text before ``[1]``)."""
    parts = []
    claim, last_end = "", 0
    for match in _CITATION.finditer(answer_text):
        segment = answer_text[last_end : match.start()].strip()
        if segment:
            claim = segment
        last_end = match.end()
        if n in cited_numbers(match.group(0)):
            parts.append(claim)
    return " ".join(parts)


def best_snippet(text: str, query: str, max_chars: int = SNIPPET_MAX_CHARS) -> str:
    """The sentence of ``text`` sharing the most content words with ``query``.

    Falls back to the start of ``text`` when no sentence shares any; at most
    ``max_chars`` characters either way.
    """
    sentences = split_sentences(text, max_chars=max_chars)
    if not sentences:
        return ""
    wanted = set(content_terms(query))
    best, best_overlap = 0, 0
    for i, sentence in enumerate(sentences):
        overlap = len(wanted.intersection(content_terms(sentence)))
        if overlap > best_overlap:
            best, best_overlap = i, overlap
    if best_overlap == 0:
        return clip(text, max_chars)
    return clip(sentences[best], max_chars)


def citation(
    n: int,
    hit: Hit,
    snippet: str,
    pieces: Sequence[str] = (),
    *,
    span: tuple[int, int] | None = None,
) -> Citation:
    """Source ``n`` cited by ``snippet`` (made of ``pieces`` of the hit's text, in reading
    order, when it joins several), with where that passage is in the page's text: ``span``
    (offsets into the hit's text) when the caller knows it (a snippet cleaned for reading
    is not found in the text as it is), else found from the pieces."""
    start, end = passage(hit, pieces or [snippet]) if span is None else spanned(hit, span)
    return Citation(
        n=n,
        document_id=hit.document_id,
        filename=hit.filename,
        page=hit.page,
        snippet=snippet,
        score=hit.score,
        char_start=start,
        char_end=end,
    )


def _offsets_known(hit: Hit) -> bool:
    start, end = hit.char_start, hit.char_end
    return start is not None and end is not None and end - start == len(hit.text) and bool(hit.text)


def spanned(hit: Hit, span: tuple[int, int]) -> tuple[int | None, int | None]:
    """``span`` (offsets into the hit's text) as offsets into the page's text; (None, None)
    when the hit's offsets are unknown or do not fit its text."""
    if not _offsets_known(hit) or hit.char_start is None:
        return None, None
    return hit.char_start + span[0], hit.char_start + span[1]


def passage(hit: Hit, pieces: Sequence[str]) -> tuple[int | None, int | None]:
    """The span of the page's text from the first piece to the last: offsets into the page
    (the hit's chunk starts at ``char_start``); the whole chunk when a piece is not in it;
    (None, None) when the hit's offsets are unknown or do not fit its text."""
    start, end = hit.char_start, hit.char_end
    if start is None or end is None or end - start != len(hit.text) or not hit.text:
        return None, None
    first = locate(hit.text, pieces[0])
    last = locate(hit.text, pieces[-1], first[0]) if first is not None else None
    if first is None or last is None:
        return start, end
    return start + first[0], start + last[1]


def make_citations(answer_text: str, hits: Sequence[Hit]) -> list[Citation]:
    """Citations for the sources ``answer_text`` cites, ordered by number.

    Numbers outside 1..len(hits) are ignored; an answer citing nothing gets no citations.
    Each snippet is the part of the source closest to the answer sentences citing it.
    """
    citations = []
    unknown: list[int] = []
    for n in sorted(cited_numbers(answer_text)):
        if n > len(hits):
            unknown.append(n)
            continue
        hit = hits[n - 1]
        citations.append(citation(n, hit, best_snippet(hit.text, _citing_text(answer_text, n))))
    if unknown:
        logger.info("answer cites unknown sources %s of %d", unknown, len(hits))
    return citations


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
# The NOT_FOUND phrase, and the usual ways of saying the same that models fall back on,
# at the start of a reply (lower case, whitespace collapsed).
_NOT_FOUND_OPENING = re.compile(
    re.escape(" ".join(NOT_FOUND.casefold().rstrip(".").split()))
    + r"|i (?:do not|don't|cannot|can't|could not|couldn't) (?:know|find|answer|tell|determine)\b"
    + r"|i(?: am|'m) (?:unable|not able) to (?:find|answer|tell|determine)\b"
    + r"|(?:the )?(?:sources?|documents?|context) (?:do|does|did) not"
    + r" (?:say|contain|mention|answer|provide)\b"
    + r"|there is no (?:information|mention|answer)\b"
)


def says_not_found(answer_text: str) -> bool:
    """Whether a reply says, from its start, that the sources do not answer: the
    ``NOT_FOUND`` phrase the prompt asks for (case, spacing, quotes and a leading
    "Answer:" aside), or a usual wording of the same ("I don't know", "The sources do not
    say"). The model then abstained.

    Only the beginning counts: a reply that answers part of the question and says the
    phrase about the rest is an answer.
    """
    text = " ".join(answer_text.translate(_QUOTES).casefold().split())
    head = text.split(":", 1)[1].strip() if ":" in text[:20] else text
    return bool(_NOT_FOUND_OPENING.match(head.lstrip("\"'*_ ")))


def relevant_hits(hits: Iterable[Hit], min_score: float) -> list[Hit]:
    """The hits good enough to be evidence, in their original order."""
    return [hit for hit in hits if hit.score >= min_score]
