from __future__ import annotations

import pytest

from libs.common.models import Hit
from services.generator.prompt import (
    NOTHING_RELEVANT,
    SYSTEM_PROMPT,
    build_messages,
    cited_numbers,
    make_citations,
)


def _hit(text: str, *, filename: str = "doc.pdf", page: int = 1, score: float = 0.5) -> Hit:
    return Hit(document_id=f"id-{filename}", filename=filename, page=page, score=score, text=text)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("Refunds take 14 days [2].", [2]),
        ("A [1, 3] and B [2][4].", [1, 3, 2, 4]),
        ("Both agree [3][1]. Again [1].", [3, 1]),
        ("A range [2-4].", [2, 3, 4]),
        ("Spaced [ 2 ,3 ] and semicolons [5; 6].", [2, 3, 5, 6]),
        ("Labelled [Source 2] and [sources 1 and 3].", [2, 1, 3]),
        ("No citations here, [a] [] [0] or [x](http://example.com).", []),
        ("A silly range [1-5000] is only its start.", [1]),
    ],
)
def test_cited_numbers(text: str, numbers: list[int]) -> None:
    assert cited_numbers(text) == numbers


def test_build_messages_numbers_sources_in_order() -> None:
    hits = [
        _hit("Refunds take 14 days.", filename="refunds.pdf", page=3),
        Hit(document_id="b", filename="faq.md", page=2, page_end=3, score=0.4, text="Shipping is free."),
    ]
    messages = build_messages("  How long do refunds take? ", hits)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert "[n]" in SYSTEM_PROMPT or "[1]" in SYSTEM_PROMPT
    user = messages[1]["content"]
    assert "[1] refunds.pdf, page 3\nRefunds take 14 days." in user
    assert "[2] faq.md, pages 2-3\nShipping is free." in user
    assert user.index("[1]") < user.index("[2]")
    assert user.endswith("Question: How long do refunds take?")


def test_make_citations_only_for_cited_sources_with_relevant_snippet() -> None:
    hits = [
        _hit("Shipping is free over 50 euros.", filename="shipping.pdf", page=1, score=0.7),
        _hit(
            "Our office is in Lyon. Refunds are paid back within 14 days of the request. "
            "Gift cards cannot be refunded.",
            filename="refunds.pdf",
            page=4,
            score=0.6,
        ),
    ]
    answer = "Refunds are paid within 14 days [2]. Support answers in French [7]."
    citations = make_citations(answer, hits)
    assert len(citations) == 1
    c = citations[0]
    assert (c.n, c.document_id, c.filename, c.page, c.score) == (2, "id-refunds.pdf", "refunds.pdf", 4, 0.6)
    assert c.snippet == "Refunds are paid back within 14 days of the request."


def test_make_citations_sorted_by_number_and_snippets_short() -> None:
    long_text = "Lorem ipsum dolor sit amet " * 40
    hits = [_hit(long_text), _hit("Beta facts.", filename="b.pdf")]
    citations = make_citations("Beta [2]. Unrelated [1].", hits)
    assert [c.n for c in citations] == [1, 2]
    assert len(citations[0].snippet) <= 300
    assert citations[1].snippet == "Beta facts."


def test_make_citations_cites_nothing_when_answer_cites_nothing() -> None:
    hits = [_hit("Refunds take 14 days.")]
    assert make_citations("I don't know based on the documents.", hits) == []
    assert make_citations(NOTHING_RELEVANT, hits) == []


def test_a_citation_says_where_its_snippet_is_in_the_pages_text() -> None:
    page = (
        "Intro line.\n\nOur office is in Lyon.  Refunds are paid back\nwithin 14 days of the request. "
        "Gift cards cannot be refunded."
    )
    chunk = page[13:]
    hit = Hit(
        document_id="d", filename="r.txt", page=1, score=0.6, text=chunk, char_start=13, char_end=len(page)
    )
    [c] = make_citations("Refunds are paid within 14 days [1].", [hit])
    assert c.snippet == "Refunds are paid back within 14 days of the request."
    assert c.char_start is not None and c.char_end is not None
    assert " ".join(page[c.char_start : c.char_end].split()) == c.snippet
    # Offsets that do not fit the chunk's text are not passed on; none known, none given.
    bad = hit.model_copy(update={"char_end": 5})
    assert make_citations("Refunds [1].", [bad])[0].char_start is None
    assert make_citations("Refunds [1].", [_hit(chunk)])[0].char_end is None


def test_a_clipped_snippet_not_found_whole_cites_the_whole_chunk() -> None:
    text = "alpha beta gamma " * 40
    hit = Hit(
        document_id="d",
        filename="a.txt",
        page=2,
        score=0.5,
        text=text,
        char_start=100,
        char_end=100 + len(text),
    )
    [c] = make_citations("Something [1].", [hit])
    assert c.snippet.endswith("\u2026")
    # The clip is found (its ellipsis aside): the span is its own, inside the chunk.
    assert c.char_start == 100 and c.char_end is not None and c.char_end < 100 + len(text)
    from services.generator.prompt import passage

    assert passage(hit, ["not in the chunk"]) == (100, 100 + len(text))
