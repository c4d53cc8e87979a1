from __future__ import annotations

import io

import pytest
from fpdf import FPDF
from pypdf import PdfWriter

from libs.common.errors import PermanentError
from services.embedder.parsing import (
    SUPPORTED_EXTENSIONS,
    Page,
    decode_text,
    file_extension,
    parse_document,
)
from tests import hostile


def make_pdf(page_texts: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in page_texts:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def encrypt(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(data))
    # RC4 works without the optional cryptography package.
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


THREE_PAGES = [
    "Aardvark facts live on page one.",
    "Bluebird notes live on page two.",
    "Capybara data is on three.",
]


def test_supported_extensions() -> None:
    assert {".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm"} == SUPPORTED_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in SUPPORTED_EXTENSIONS)
    assert file_extension("Report.Final.PDF") == ".pdf"
    assert file_extension("README") == ""


def test_pdf_pages_keep_their_numbers() -> None:
    pages = parse_document("doc.pdf", make_pdf(THREE_PAGES), max_pages=10)
    assert [p.number for p in pages] == [1, 2, 3]
    for page, word in zip(pages, ["Aardvark", "Bluebird", "Capybara"], strict=True):
        assert word in page.text
    assert "Bluebird" not in pages[0].text
    assert "Aardvark" not in pages[2].text


def test_pdf_extension_is_case_insensitive() -> None:
    pages = parse_document("DOC.PDF", make_pdf(THREE_PAGES[:1]), max_pages=10)
    assert pages == [Page(number=1, text=pages[0].text)]


def test_pdf_empty_pages_are_kept() -> None:
    pages = parse_document("gaps.pdf", make_pdf(["first page", "", "", "fourth page"]), max_pages=10)
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert [p.text.strip() for p in pages] == ["first page", "", "", "fourth page"]


def test_pdf_without_text_layer() -> None:
    with pytest.raises(PermanentError, match="no extractable text on any of its 2 pages"):
        parse_document("scan.pdf", make_pdf(["", ""]), max_pages=10)
    with pytest.raises(PermanentError, match="no extractable text on its one page"):
        parse_document("scan.pdf", make_pdf([""]), max_pages=10)


def test_thousands_of_blank_pages() -> None:
    with pytest.raises(PermanentError, match="no extractable text on any of its 3,000 pages"):
        parse_document("blank.pdf", hostile.blank_pdf(3000), max_pages=3000)


def test_pdf_with_user_password() -> None:
    data = encrypt(make_pdf(THREE_PAGES), user_password="s3cret")
    with pytest.raises(PermanentError, match="encrypted PDF: it is password-protected"):
        parse_document("locked.pdf", data, max_pages=10)
    aes = hostile.encrypted_pdf("Aardvark", user_password="s3cret")
    with pytest.raises(PermanentError, match="encrypted PDF: it is password-protected"):
        parse_document("locked.pdf", aes, max_pages=10)


def test_pdf_with_an_aes_owner_password_only_is_read() -> None:
    # AES needs the cryptography package (pypdf[crypto]); RC4 does not.
    pages = parse_document(
        "restricted.pdf", hostile.encrypted_pdf("Aardvark", user_password=""), max_pages=10
    )
    assert [p.text for p in pages] == ["Aardvark"]


def test_pdf_with_owner_password_only_is_read() -> None:
    data = encrypt(make_pdf(THREE_PAGES), user_password="")
    pages = parse_document("restricted.pdf", data, max_pages=10)
    assert "Capybara" in pages[2].text


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_pdf(keep: float) -> None:
    data = make_pdf(THREE_PAGES)
    with pytest.raises(PermanentError, match="could not read PDF: the file is truncated"):
        parse_document("broken.pdf", data[: int(len(data) * keep)], max_pages=10)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello, I am not a PDF", "the file is not a PDF"),
        (bytes(range(256)), "the file is not a PDF"),
        (b"%PDF-1.7\n\x00\x01garbage", "the file is truncated"),
        (b"%PDF-1.7\n\x00\x01garbage\n%%EOF\n", "the file is damaged"),
    ],
)
def test_not_a_pdf(data: bytes, reason: str) -> None:
    with pytest.raises(PermanentError, match=f"could not read PDF: {reason}"):
        parse_document("fake.pdf", data, max_pages=10)


def test_too_many_pages() -> None:
    with pytest.raises(PermanentError, match="3 pages; at most 2 \\(DOCUMIND_MAX_PAGES\\)"):
        parse_document("long.pdf", make_pdf(THREE_PAGES), max_pages=2)
    assert len(parse_document("long.pdf", make_pdf(THREE_PAGES), max_pages=3)) == 3


def test_utf8_text_is_one_page() -> None:
    text = "Grüße aus Köln.\nSecond line — with a dash."
    assert parse_document("notes.txt", text.encode(), max_pages=1) == [Page(number=1, text=text)]


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Café crème brûlée à la française, naïve façade.\nDeuxième ligne.", "latin-1"),
        ("Grüße aus München, schöne Straße.", "latin-1"),
        ("naïve price: €5, “quoted” — dashed", "cp1252"),
        ("Café crème brûlée à la française.\nПривет, мир! 日本語", "utf-16"),
        ("Привет мир, это проверка кодировки текста.", "cp1251"),
    ],
)
def test_non_utf8_text(text: str, encoding: str) -> None:
    pages = parse_document("legacy.TXT", text.encode(encoding), max_pages=1)
    assert pages == [Page(number=1, text=text)]


def test_text_newlines_and_bom_are_normalised() -> None:
    data = "\ufeffline one\r\nline two\rline three\x00".encode()
    assert decode_text(data) == "line one\nline two\nline three"


def test_binary_text_file_is_a_clear_error() -> None:
    data = bytes(range(256)) * 4
    with pytest.raises(PermanentError, match="could not read the file as text"):
        parse_document("blob.txt", data, max_pages=1)


@pytest.mark.parametrize("name", ["readme.md", "guide.Markdown"])
def test_markdown_is_one_page(name: str) -> None:
    text = "# Title\n\nSome *text*.\n"
    assert parse_document(name, text.encode(), max_pages=1) == [Page(number=1, text=text)]


@pytest.mark.parametrize("name", ["a.txt", "a.md", "a.pdf", "a.docx", "a.html", "a.htm"])
def test_empty_file(name: str) -> None:
    with pytest.raises(PermanentError, match="empty file"):
        parse_document(name, b"", max_pages=10)


def test_whitespace_only_text() -> None:
    with pytest.raises(PermanentError, match="no extractable text"):
        parse_document("blank.txt", b" \n\t\n", max_pages=1)


@pytest.mark.parametrize(("name", "shown"), [("sheet.xyz", "'.xyz'"), ("archive.tar.gz", "'.gz'")])
def test_unsupported_type(name: str, shown: str) -> None:
    with pytest.raises(PermanentError, match=f"unsupported file type {shown}"):
        parse_document(name, b"data", max_pages=1)


def test_no_extension() -> None:
    with pytest.raises(PermanentError, match="unsupported file type"):
        parse_document("README", b"data", max_pages=1)


def test_every_supported_extension_has_a_parser() -> None:
    from services.embedder import parsing

    handled = (
        parsing.TEXT_EXTENSIONS
        | parsing.MARKDOWN_EXTENSIONS
        | parsing.PDF_EXTENSIONS
        | parsing.DOCX_EXTENSIONS
        | parsing.HTML_EXTENSIONS
    )
    assert handled == parsing.SUPPORTED_EXTENSIONS
