"""PDF page text as a reader sees it: no running headers or footers, whole words,
contents and index pages marked, heading paths from the outline, page numbers exact."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from fpdf import FPDF

from libs.common.models import Chunk
from services.embedder.chunking import chunk_pages
from services.embedder.formats.pdf import pages_from_texts
from services.embedder.parsing import Page, parse_document
from tests import hostile

HEADER = "ACME Pump 3000 Service Manual"
BODY = [
    "Unscrew the four bolts of the front cover.",
    "Drain the oil into a tray before you lift the pump.",
    "The impeller turns clockwise seen from the motor.",
    "Replace the gasket whenever the cover was opened.",
    "Run the pump dry for no longer than ten seconds.",
]
# The first line of pages 2 and 4: body text that repeats, but on two pages only.
REPEATED = "Wear gloves: the housing stays hot for an hour."


def write_lines(pdf: FPDF, lines: Sequence[str]) -> None:
    for line in lines:
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")


def manual(pages: Sequence[Sequence[str]], *, header: str = HEADER, footer: bool = True) -> bytes:
    """A PDF with ``header`` at the top and "Page n of N" at the foot of every page."""
    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.set_font("Helvetica", size=11)
    for number, lines in enumerate(pages, 1):
        pdf.add_page()
        if header:
            write_lines(pdf, [header])
        pdf.ln(6)
        write_lines(pdf, lines)
        if footer:
            pdf.set_y(-20)
            write_lines(pdf, [f"Page {number} of {len(pages)}"])
    return bytes(pdf.output())


def chunks_of(pages: list[Page]) -> list[Chunk]:
    return chunk_pages(pages, "doc", "manual.pdf", size_words=200, overlap_words=0)


def test_running_headers_and_footers_are_in_no_chunk_and_body_lines_stay() -> None:
    bodies = [[BODY[n], f"Step {n + 1} of the overhaul."] for n in range(5)]
    bodies[1].insert(0, REPEATED)
    bodies[3].insert(0, REPEATED)
    pages = parse_document("manual.pdf", manual(bodies), max_pages=10)
    chunks = chunks_of(pages)

    assert [page.number for page in pages] == [1, 2, 3, 4, 5]
    assert not [c for c in chunks if HEADER in c.text or " of 5" in c.text]
    for n, line in enumerate(BODY, 1):
        assert [c.page for c in chunks if line in c.text] == [n]
    assert [c.page for c in chunks if REPEATED in c.text] == [2, 4]
    for chunk in chunks:
        assert pages[chunk.page - 1].text[chunk.char_start : chunk.char_end] == chunk.text


def test_a_short_document_keeps_every_line() -> None:
    for count in (2, 3):
        data = manual([[BODY[n]] for n in range(count)], header="Minutes of the board")
        pages = parse_document("minutes.pdf", data, max_pages=10)
        assert [page.text for page in pages] == [
            f"Minutes of the board\n{BODY[n]}\nPage {n + 1} of {count}" for n in range(count)
        ]


def test_a_page_that_is_all_one_repeated_line_is_kept() -> None:
    pages = parse_document("same.pdf", manual([[BODY[0]]] * 4, header="", footer=False), max_pages=10)
    assert all(page.text == BODY[0] for page in pages)


def test_line_break_hyphens_are_joined_and_real_hyphens_kept() -> None:
    data = manual(
        [
            ["The valve is a well-known weak point of older models.", "It keeps the pres-", "sure even."],
            ["A well-", "known fix is a new seal; the manufac-", "turer sells one."],
            ["Regular service is cheap.", "Call the service desk."],
        ],
        header="",
        footer=False,
    )
    text = " ".join(page.text for page in parse_document("valve.pdf", data, max_pages=10))
    assert "keeps the pressure" in text
    assert "manufacturer sells one" in text
    assert "A well-known fix" in text


def test_ligatures_and_minus_signs_read_as_letters_people_type() -> None:
    [page] = pages_from_texts(["The \ufb01rst \ufb02ag: set \u2212e stops on the \ufb03rst error."])
    assert page.text == "The first flag: set -e stops on the ffirst error."


TOC = [
    "Contents",
    "1 Safety .......................... 2",
    "2 Installation .................... 3",
    "2.1 Mounting ...................... 3",
    "2.2 Wiring ........................ 4",
    "3 Operation ....................... 5",
    "4 Maintenance ..................... 6",
    "5 Troubleshooting ................. 7",
]
INDEX = [
    "Index",
    "bolts, 3, 6",
    "cover, 3",
    "gasket, 6, 7",
    "gloves, 2",
    "impeller, 5",
    "oil",
    "draining, 6",
    "pump, 2, 3, 5",
    "wiring, 4",
]
# Rows that end in numbers, not page numbers in order: a body page.
PRICES = [
    "Spare parts and their prices",
    "Impeller 120",
    "Gasket 15",
    "Cover 480",
    "Bolt set 9",
    "Motor 1200",
    "Valve 75",
    "Seal 12",
]


# The last page of the contents, with only a few entries.
TOC_END = ["6 Spare parts ..................... 8", "7 Index ........................... 9"]


def test_contents_and_index_pages_are_marked_and_tables_are_body() -> None:
    bodies = [TOC, TOC_END, *[[line] for line in BODY], PRICES, INDEX]
    pages = parse_document("manual.pdf", manual(bodies, header="", footer=False), max_pages=20)
    assert [page.kind for page in pages] == ["contents"] * 2 + ["body"] * 6 + ["index"]
    assert "Gasket 15" in pages[7].text


def outlined(sections: Sequence[tuple[int, int, str]], page_lines: Sequence[Sequence[str]]) -> bytes:
    """Pages of ``page_lines``; ``(page, line, title)`` puts an outline entry at the title
    written before that line, ``title``'s level its count of leading ">"."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for number, lines in enumerate(page_lines):
        pdf.add_page()
        for index, line in enumerate(lines):
            for page, at, title in sections:
                if (page, at) == (number, index):
                    level = len(title) - len(title.lstrip(">"))
                    pdf.start_section(title.lstrip(">"), level=level)
                    write_lines(pdf, [title.lstrip(">")])
            write_lines(pdf, [line])
    return bytes(pdf.output())


def test_chunks_carry_the_outline_heading_path_across_pages() -> None:
    data = outlined(
        [(0, 0, "Installation"), (1, 1, ">Wiring the motor"), (3, 0, "Operation")],
        [[BODY[0]], [BODY[1], BODY[2]], [BODY[3]], [BODY[4]]],
    )
    pages = parse_document("outlined.pdf", data, max_pages=10)
    headings = {line: c.heading for c in chunks_of(pages) for line in BODY if line in c.text}
    assert headings == {
        BODY[0]: "Installation",
        BODY[1]: "Installation",
        BODY[2]: "Installation > Wiring the motor",
        BODY[3]: "Installation > Wiring the motor",
        BODY[4]: "Operation",
    }
    for page in pages:
        assert page.sections[0].start == 0
        assert page.sections[-1].end == len(page.text)


def test_a_pdf_without_an_outline_has_no_sections() -> None:
    pages = parse_document("plain.pdf", manual([[line] for line in BODY], header=""), max_pages=10)
    assert all(page.sections == () for page in pages)
    assert {c.heading for c in chunks_of(pages)} == {""}


def test_a_space_drawn_as_character_spacing_is_a_space() -> None:
    # As groff draws "two forms": the space is 2.5 pt of character spacing after "o".
    line = b"(Of the tw) Tj 2.5 Tc 40.02 0 Td (of) Tj 0 Tc 10.84 0 Td (orms, the first is preferred.) Tj"
    # A word drawn letter-spaced all through is one word still.
    spaced = b"0 -20 Td 2.5 Tc (Warning) Tj 0 Tc"
    data = hostile.pdf([zlib.compress(b"BT /F1 10 Tf 72 700 Td %b %b ET" % (line, spaced))])
    [page] = parse_document("groff.pdf", data, max_pages=10)
    assert page.text == "Of the two forms, the first is preferred.\nWarning"


def test_a_footer_with_the_printed_page_number_is_dropped_whatever_its_title() -> None:
    # Printed numbers run two behind the physical pages; each footer names its own
    # section, so no footer line repeats. A section number opening a page is kept.
    titles = ["Cover", "Oil", "Impeller", "Gasket", "Dry running"]
    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.set_font("Helvetica", size=11)
    for n, (title, line) in enumerate(zip(titles, BODY, strict=True), 1):
        pdf.add_page()
        write_lines(pdf, [f"{n}.1 {title}", line])
        pdf.set_y(-20)
        write_lines(pdf, [f"{n}.1. {title} {n - 2}" if n > 2 else ""])
    pages = parse_document("numbered.pdf", bytes(pdf.output()), max_pages=10)
    assert [page.text for page in pages] == [
        f"{n}.1 {title}\n{line}" for n, (title, line) in enumerate(zip(titles, BODY, strict=True), 1)
    ]


def test_a_footer_after_a_hyphenated_last_word_is_dropped_and_the_word_kept() -> None:
    # PDFium takes out the line break after a line-end hyphen (marking the hyphen
    # U+FFFE), so the page's last body line ran into its footer, which then was no
    # line of its own and stayed in the text: "... before the over-Page 1 of 5".
    ends = ["service", "inspection", "replacement", "adjustment", "overhaul"]
    bodies = [[BODY[n], f"Read chapter {n + 2} before the {ends[n][:4]}-"] for n in range(5)]
    pages = parse_document("manual.pdf", manual(bodies), max_pages=10)

    assert [page.text for page in pages] == [
        f"{BODY[n]}\nRead chapter {n + 2} before the {ends[n][:4]}-" for n in range(5)
    ]
