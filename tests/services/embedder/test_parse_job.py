"""One upload's parse and its document limits (characters, chunks), in this process."""

from __future__ import annotations

import pytest

from libs.common.errors import PermanentError
from libs.common.models import Chunk
from libs.common.settings import EmbedderSettings
from services.embedder.parse_job import ChunkSpec, ParseJob, ParseLimits, parse_and_chunk
from tests import hostile


def job(filename: str, **settings: object) -> ParseJob:
    s = EmbedderSettings(_env_file=None, chunk_size_words=20, chunk_overlap_words=2, **settings)
    return ParseJob(filename, ChunkSpec.for_backend(s, object()), ParseLimits.from_settings(s))


def html_sections(n: int) -> bytes:
    return "".join(f"<h2>Part {k}</h2><p>Text of part {k}.</p>" for k in range(n)).encode()


TEXT_OF_5000 = ("The keeper lit the lamp. " * 200).encode()


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("a.txt", TEXT_OF_5000),
        ("a.md", TEXT_OF_5000),
        ("a.pdf", hostile.text_pdf(*["The keeper lit the lamp at dusk. " * 8] * 30)),
        ("a.docx", hostile.docx(hostile.paragraph("The keeper lit the lamp at dusk.") * 200)),
        ("a.html", b"<p>" + b"The keeper lit the lamp at dusk. " * 200 + b"</p>"),
        ("deep.html", hostile.deep_html(5000, "The keeper lit the lamp at dusk. " * 200)),
    ],
)
def test_text_past_the_character_limit_fails_naming_it(filename: str, data: bytes) -> None:
    assert parse_and_chunk(job(filename, max_extracted_chars=1_000_000), data).chunks
    with pytest.raises(PermanentError) as failed:
        parse_and_chunk(job(filename, max_extracted_chars=4000), data)
    assert failed.value.message == (
        "the document has more than 4,000 characters of text (DOCUMIND_MAX_EXTRACTED_CHARS)"
    )


def test_a_pdf_stops_reading_at_the_character_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages past the limit are never read (PDFium reads the text)."""
    from pypdfium2 import PdfTextPage

    read: list[int] = []
    extract = PdfTextPage.get_text_range

    def counting(page: PdfTextPage, *args: object, **kwargs: object) -> str:
        read.append(1)
        return str(extract(page, *args, **kwargs))

    monkeypatch.setattr(PdfTextPage, "get_text_range", counting)
    pdf = hostile.text_pdf("x" * 300, "y" * 300, "z" * 300)
    with pytest.raises(PermanentError, match="more than 100 characters"):
        parse_and_chunk(job("a.pdf", max_extracted_chars=100), pdf)
    assert len(read) == 1


def test_more_chunks_than_the_limit_fails_naming_it() -> None:
    data = html_sections(30)  # a section per heading, a chunk per section
    assert len(parse_and_chunk(job("a.html", max_chunks=30), data).chunks) == 30
    with pytest.raises(PermanentError) as failed:
        parse_and_chunk(job("a.html", max_chunks=29), data)
    assert failed.value.message == "the document makes 30 chunks, more than 29 (DOCUMIND_MAX_CHUNKS)"


def test_limit_messages_name_the_setting_and_its_value() -> None:
    limits = job("a.pdf", parse_timeout_s=2.5, parse_memory_mb=300).limits
    assert limits.over_time().message == "parsing took longer than 2.5 s (DOCUMIND_PARSE_TIMEOUT_S)"
    assert (
        limits.over_memory().message == "parsing needed more than 300 MB of memory (DOCUMIND_PARSE_MEMORY_MB)"
    )
    assert "DOCUMIND_PARSE_MEMORY_MB" in limits.crashed("SIGSEGV").message


def test_parsed_chunks_are_chunk_dicts() -> None:
    parsed = parse_and_chunk(job("a.pdf"), hostile.text_pdf("Page one text.", "Page two text."))
    dicts = parsed.chunk_dicts("doc-1", "a.pdf")
    assert [Chunk.model_validate(d).model_dump() for d in dicts] == dicts
    assert [(d["chunk_index"], d["page"], d["text"]) for d in dicts] == [
        (0, 1, "Page one text."),
        (1, 2, "Page two text."),
    ]


def test_no_text_fails() -> None:
    with pytest.raises(PermanentError, match="no extractable text"):
        parse_and_chunk(job("a.html"), b"<script>x()</script>")
