"""Chunks carry their context (title, heading path, table header, list lead-in); their
text stays the page's exact slice; contents and index pages make no chunks."""

from __future__ import annotations

import math

import pytest

from libs.common.models import Chunk
from services.embedder.chunking import chunk_pages
from services.embedder.parse_job import ChunkSpec, ParseJob, ParseLimits, parse_and_chunk
from services.embedder.parsing import Page, Section
from services.embedder.structure import embedded_text
from tests.services.embedder.test_chunking import prose


def word_pieces(text: str) -> int:
    """Additive like WordPiece: a piece per three characters of each word."""
    return sum(math.ceil(len(word) / 3) for word in text.split())


def table_page(rows: int = 40) -> str:
    lines = ["Fit types and what they do are listed in this table.", "Name        Pages     Result"]
    lines += [f"row{i}        {i}         shrinks item{i} to fit" for i in range(rows)]
    return "\n".join(lines)


def words(
    pages: list[Page], filename: str = "userguide.pdf", size: int = 30, overlap: int = 5
) -> list[Chunk]:
    return chunk_pages(pages, "doc-1", filename, size, overlap)


def tokens(
    pages: list[Page], most: int, filename: str = "userguide.pdf", size: int | None = None
) -> list[Chunk]:
    return chunk_pages(
        pages, "doc-1", filename, 10_000, 0, count_tokens=word_pieces, max_tokens=most, size_tokens=size
    )


def test_a_table_rows_chunk_embeds_the_header_and_its_text_is_the_page_slice() -> None:
    pages = [Page(1, table_page())]
    chunks = words(pages)
    assert len(chunks) > 3
    assert chunks[0].context == "userguide"  # it holds the header itself
    for c in chunks[1:]:
        assert c.context == "userguide\nName Pages Result"
        assert pages[0].text[c.char_start : c.char_end] == c.text
        assert embedded_text(c.text, c.context) == f"userguide\nName Pages Result\n{c.text}"


def test_the_header_of_a_table_continued_on_the_next_page_is_carried() -> None:
    rows = table_page(30).split("\n")
    pages = [Page(1, "\n".join(rows[:12])), Page(2, "\n".join(rows[12:]))]
    chunks = words(pages)
    on_two = [c for c in chunks if c.page == 2]
    assert on_two and all(c.context == "userguide\nName Pages Result" for c in on_two)
    assert all(pages[1].text[c.char_start : c.char_end] == c.text for c in on_two)


def test_a_list_items_chunk_embeds_the_lead_in() -> None:
    items = [f"{i}. statement kind{i} is allowed in the body of a repeat loop." for i in range(1, 30)]
    text = "Loops. The following statements may appear inside a loop body:\n" + "\n".join(items)
    chunks = words([Page(1, text)])
    assert len(chunks) > 3
    for c in chunks[1:]:
        assert c.context == "userguide\nThe following statements may appear inside a loop body:"
        assert text[c.char_start : c.char_end] == c.text


def test_heading_path_follows_the_title_and_markdown_headings() -> None:
    text = "# Guide\n\n## Setup\n\nInstall it first. " + prose(4, 20)
    chunks = words([Page(1, text)], filename="install-notes.md")
    assert chunks and all(c.context.startswith("install-notes > Guide > Setup") for c in chunks)
    body = "Intro text here.\nBody text of the section."
    sectioned = Page(1, body, sections=(Section(0, 17, "Intro"), Section(17, len(body), "")))
    docx = words([sectioned], filename="4983.docx")
    assert docx[0].context == "Intro" and docx[-1].context == ""  # a numeric name is no title


def test_contents_and_index_pages_make_no_chunks_and_numbers_stay_exact() -> None:
    pages = [
        Page(1, "Contents\nIntroduction 3\nTables 4", kind="contents"),
        Page(2, prose(1, 10)),
        Page(3, prose(2, 10)),
        Page(4, "Index\nfit, 3\ntables, 4", kind="index"),
    ]
    chunks = words(pages)
    assert {c.page for c in chunks} == {2, 3}
    for c in chunks:
        assert pages[c.page - 1].text[c.char_start : c.char_end] == c.text
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))


def test_a_document_that_is_all_index_is_still_chunked() -> None:
    pages = [Page(1, "Index\nfit, 3\ntables, 4", kind="index")]
    assert [c.page for c in words(pages)] == [1]


@pytest.mark.parametrize(("most", "size"), [(24, None), (40, 30), (60, None), (254, 200)])
def test_context_and_text_together_fit_max_tokens(most: int, size: int | None) -> None:
    heading = " > ".join(f"Chapter{i} about configuration" for i in range(5))
    pages = [
        Page(1, table_page(60), sections=(Section(0, len(table_page(60)), heading),)),
        Page(2, prose(3)),
    ]
    chunks = tokens(pages, most, size=size)
    assert any("Name Pages Result" in c.context for c in chunks)
    for c in chunks:
        assert word_pieces(embedded_text(c.text, c.context)) <= most, (c.context, c.text)
        assert pages[c.page - 1].text[c.char_start : c.char_end] == c.text
        assert c.text


def test_a_context_too_long_for_the_model_is_cut_to_half_of_it() -> None:
    page = Page(1, "Name        Value\n" + "\n".join(f"k{i}          v{i}" for i in range(80)), sections=())
    long_title = "manual " + "word " * 200
    chunks = chunk_pages(
        [page], "doc-1", f"{long_title}.pdf", 10_000, 0, count_tokens=word_pieces, max_tokens=30
    )
    for c in chunks:
        assert word_pieces(c.context) <= 15
        assert word_pieces(embedded_text(c.text, c.context)) <= 30


def test_contexts_travel_from_the_parse_with_their_chunks() -> None:
    from tests import hostile

    data = hostile.text_pdf("Some words on page one.", "Some words on page two.")
    s = ChunkSpec(size_words=20, overlap_words=2)
    limits = ParseLimits(1000, 10**8, 10**7, 1000, 60, 512)
    parsed = parse_and_chunk(ParseJob("harbour-guide.pdf", s, limits), data)
    dicts = parsed.chunk_dicts("doc-1", "harbour-guide.pdf")
    assert [d["context"] for d in dicts] == ["harbour-guide", "harbour-guide"]
    assert [Chunk.model_validate(d).model_dump() for d in dicts] == dicts
