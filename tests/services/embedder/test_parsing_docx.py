from __future__ import annotations

import io
import zipfile

import docx
import pytest

from libs.common.errors import PermanentError
from services.embedder.chunking import chunk_pages
from services.embedder.formats.docx_format import check_zip
from services.embedder.parsing import parse_document
from tests import hostile


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Field Guide", 0)
    document.add_heading("Mammals", 1)
    document.add_paragraph("Aardvarks dig burrows at night. They eat ants and termites.")
    document.add_heading("Diet", 2)
    document.add_paragraph("Termite mounds are opened with strong claws.")
    table = document.add_table(rows=3, cols=2)
    for row, (name, weight) in enumerate(
        [("Animal", "Weight"), ("Aardvark", "60 kg"), ("Pangolin", "12 kg")]
    ):
        table.cell(row, 0).text = name
        table.cell(row, 1).text = weight
    document.add_paragraph("After the table.")
    document.add_heading("Birds", 1)
    document.add_paragraph("Bluebirds sing in spring.")
    document.add_paragraph("   ")  # empty paragraphs are skipped
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_text_in_document_order() -> None:
    pages = parse_document("Guide.DOCX", make_docx(), max_pages=1)
    assert len(pages) == 1
    text = pages[0].text
    assert pages[0].number == 1
    order = [
        "Field Guide",
        "Mammals",
        "Aardvarks dig",
        "Diet",
        "Termite mounds",
        "Animal | Weight",
        "Aardvark | 60 kg",
        "Pangolin | 12 kg",
        "After the table.",
        "Birds",
        "Bluebirds sing",
    ]
    positions = [text.index(fragment) for fragment in order]
    assert positions == sorted(positions)
    assert "Animal | Weight\nAardvark | 60 kg\nPangolin | 12 kg" in text
    assert "\n\nAfter the table." in text
    assert "\n\n\n" not in text
    assert text == text.strip()


def test_docx_headings_give_the_heading_path() -> None:
    pages = parse_document("guide.docx", make_docx(), max_pages=1)
    chunks = chunk_pages(pages, "doc-1", "guide.docx", size_words=100, overlap_words=10)
    by_heading = {c.heading: c.text for c in chunks}
    assert list(by_heading) == [
        "Field Guide > Mammals",
        "Field Guide > Mammals > Diet",
        "Field Guide > Birds",
    ]
    assert "Aardvarks dig" in by_heading["Field Guide > Mammals"]
    assert "Pangolin | 12 kg" in by_heading["Field Guide > Mammals > Diet"]
    for c in chunks:
        assert pages[0].text[c.char_start : c.char_end] == c.text


def test_docx_merged_cells_are_not_repeated() -> None:
    document = docx.Document()
    table = document.add_table(rows=1, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "wide cell"
    table.cell(0, 2).text = "narrow"
    out = io.BytesIO()
    document.save(out)
    assert parse_document("t.docx", out.getvalue(), max_pages=1)[0].text == "wide cell | narrow"


def test_docx_without_text() -> None:
    out = io.BytesIO()
    docx.Document().save(out)
    with pytest.raises(PermanentError, match="no extractable text"):
        parse_document("blank.docx", out.getvalue(), max_pages=1)


@pytest.mark.parametrize(
    "data",
    [b"plain text pretending to be a document", b"PK\x03\x04 truncated", bytes(range(256))],
)
def test_not_a_zip(data: bytes) -> None:
    with pytest.raises(PermanentError, match="could not read DOCX: not a valid ZIP archive"):
        parse_document("fake.docx", data, max_pages=1)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_docx(keep: float) -> None:
    data = make_docx()
    with pytest.raises(PermanentError, match="could not read DOCX"):
        parse_document("cut.docx", data[: int(len(data) * keep)], max_pages=1)


def test_old_word_or_encrypted_docx() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    with pytest.raises(PermanentError, match=r"password-protected or an old Word \(\.doc\) file"):
        parse_document("secret.docx", ole, max_pages=1)


def test_zip_that_is_not_a_word_document() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not a docx")
    with pytest.raises(PermanentError, match="could not read DOCX"):
        parse_document("other.docx", out.getvalue(), max_pages=1)


def zip_bomb(member_bytes: int, name: str = "word/document.xml") -> bytes:
    """A ZIP holding ``member_bytes`` zeros, deflated, written in chunks (never all in memory)."""
    out = io.BytesIO()
    block = bytes(4 * 1024 * 1024)
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open(name, "w", force_zip64=True) as member,
    ):
        left = member_bytes
        while left > 0:
            member.write(block[: min(left, len(block))])
            left -= len(block)
    return out.getvalue()


def test_zip_bomb_over_the_total_limit() -> None:
    data = zip_bomb(3 * 1024 * 1024)
    reason = r"unpacks to more than 1,000,000 bytes \(DOCUMIND_MAX_UNPACKED_BYTES; zip bomb\?\)"
    with pytest.raises(PermanentError, match=reason):
        parse_document("bomb.docx", data, max_pages=1, max_unpacked_bytes=1_000_000)


def test_zip_bomb_by_compression_ratio() -> None:
    data = zip_bomb(40 * 1024 * 1024)
    assert len(data) < 1024 * 1024
    # Within the default total of 200 MB, but 40 MB from a few KB.
    with pytest.raises(PermanentError, match="zip bomb"):
        parse_document("bomb.docx", data, max_pages=1)


def test_large_zip_bomb() -> None:
    data = zip_bomb(300 * 1024 * 1024)
    with pytest.raises(PermanentError, match="unpacks to more than 209,715,200 bytes"):
        parse_document("bomb.docx", data, max_pages=1)


def test_check_zip_accepts_a_real_docx() -> None:
    check_zip(make_docx(), max_unpacked_bytes=10 * 1024 * 1024)
    with pytest.raises(PermanentError, match="zip bomb"):
        check_zip(make_docx(), max_unpacked_bytes=1000)


def test_default_unpacked_limit() -> None:
    from libs.common.settings import EmbedderSettings

    assert EmbedderSettings.model_fields["max_unpacked_bytes"].default == 200 * 1024 * 1024


def test_entity_expansion_is_refused_with_a_reason() -> None:
    with pytest.raises(PermanentError, match="entity-expansion or 'billion laughs' attack"):
        parse_document("laughs.docx", hostile.laughs_docx("Before.", "After."), max_pages=1)
