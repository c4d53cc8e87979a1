"""The documents the end-to-end tests upload: a real three-page PDF and a Markdown note.

The PDF is written by fpdf2 with a real font, so the embedder's parser, pdf.js in the
browser and the text layer the viewer marks all read it as they would any PDF. Each page
holds facts found on that page only, so an answer's citation names a known page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fpdf import FPDF

PDF_NAME: Final = "harbour-guide.pdf"
MD_NAME: Final = "bakery-notes.md"

PAGES: Final = (
    "Elmsworth harbour guide. Chapter one introduces the harbour town of Elmsworth and its "
    "fishing fleet. The fleet sails at dawn and returns before the evening market opens. "
    "Nets are mended on the quay by the families who have fished here for generations.",
    "The Elmsworth lighthouse was built in 1887 from granite quarried on the northern cliffs. "
    "Its lamp is visible for twenty-two nautical miles on a clear night. "
    "The keeper's cottage beside the tower is now a small museum of shipwrecks.",
    "The town council meets on the first Monday of every month in the old customs house. "
    "Minutes of each meeting are posted on the church door. "
    "Visitors may attend and speak for three minutes at the end of a meeting.",
)
# The page (1-based) that answers QUESTION and FOLLOW_UP.
ANSWER_PAGE: Final = 2
QUESTION: Final = "When was the Elmsworth lighthouse built?"
# Leans on QUESTION ("its"): the conversation goes with it.
FOLLOW_UP: Final = "How far away can its lamp be seen?"
FOLLOW_UP_ANSWER: Final = "twenty-two nautical miles"

# Answered by the Markdown note only.
MD_QUESTION: Final = "When is the bakery oven cleaned?"
MD_ANSWER: Final = "cleaned every Sunday"

MARKDOWN: Final = (
    "# Bakery notes\n\n"
    "The bakery on Quay Street uses a wood-fired oven that is cleaned every Sunday.\n\n"
    "Its sourdough starter is more than forty years old and is fed with rye flour each morning.\n"
)


def write_pdf(path: Path) -> Path:
    pdf = FPDF()
    pdf.set_title("Elmsworth harbour guide")
    pdf.set_font("Helvetica", size=18)
    for text in PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 11, text)
    pdf.output(str(path))
    return path


def write_documents(folder: Path) -> tuple[Path, Path]:
    """The PDF and the Markdown note in ``folder``, under their upload names."""
    pdf = write_pdf(folder / PDF_NAME)
    md = folder / MD_NAME
    md.write_text(MARKDOWN, encoding="utf-8")
    return pdf, md
