"""Titles, tables and lists a chunk's context is made of (services/embedder/structure.py)."""

from __future__ import annotations

import pytest

from services.embedder.structure import context, document_leads, embedded_text, page_leads, title

TABLE = (
    "The encryption settings are listed below.\n"
    "Setting     Default     Meaning\n"
    "strength    128         key length in bits\n"
    "canPrint    1           printing allowed\n"
    "canCopy     1           copying allowed\n"
    "\n"
    "Other prose follows the table here."
)

LIST = (
    "Some earlier sentence. The following statements are allowed\n"
    "in the body of a loop:\n"
    "1. assignment statements;\n"
    "2. check statements, which test a condition\n"
    "and stop when it fails;\n"
    "3. display statements.\n"
    "\n"
    "A paragraph after the list."
)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("bash.pdf", "bash"),
        ("Developer Reference.pdf", "Developer Reference"),
        ("camlidl-1.04.doc.pdf", "camlidl-1.04.doc"),
        ("4983.txt", ""),
        ("2024-01-31_0001.pdf", ""),
        ("noextension", "noextension"),
    ],
)
def test_title_is_the_filename_stem_when_it_has_words(filename: str, expected: str) -> None:
    assert title(filename) == expected


def test_context_is_title_and_heading_path_then_the_lead() -> None:
    assert context("bash", "Shell Builtin Commands") == "bash > Shell Builtin Commands"
    assert context("", "Intro > Setup") == "Intro > Setup"
    assert context("bash", "", "Name  Value") == "bash\nName  Value"
    assert context("", "") == ""
    assert embedded_text("row text", "bash > Tables\nName  Value") == "bash > Tables\nName  Value\nrow text"
    assert embedded_text("row text", "") == "row text"


def test_a_long_heading_path_keeps_its_most_specific_headings() -> None:
    heading = " > ".join(f"Chapter part {i} with a long descriptive name" for i in range(12))
    found = context("manual", heading, "lead:")
    head, lead = found.split("\n")
    assert head.startswith("manual > … > ") and head.endswith("Chapter part 11 with a long descriptive name")
    assert len(head) <= 200 and lead == "lead:"


def test_a_row_inside_a_table_continues_its_header() -> None:
    leads = page_leads(TABLE)
    header = "Setting Default Meaning"
    assert leads.at(TABLE.index("canPrint")) == header
    assert leads.at(TABLE.index("canCopy")) == header
    assert leads.at(TABLE.index("key length")) == header
    # Before the table, at its header, and after it: nothing to carry.
    assert leads.at(0) == ""
    assert leads.at(TABLE.index("Setting")) == ""
    assert leads.at(TABLE.index("Other prose")) == ""


def test_a_lone_line_with_wide_gaps_is_not_a_table() -> None:
    text = "Intro text here.\nBASH(1)     General Commands Manual     BASH(1)\nA sentence follows."
    assert page_leads(text).at(text.index("A sentence")) == ""


def test_docx_and_html_cells_make_tables() -> None:
    text = "Name | Type | Allowed on\nnull_terminated | attribute | arrays\nunique | attribute | pointers"
    assert page_leads(text).at(text.index("unique")) == "Name | Type | Allowed on"


def test_two_lines_with_bars_are_not_a_table() -> None:
    """Grammar alternatives ("a | b | c") on two lines are not a header and its row."""
    text = (
        "int_default ( camlint | nativeint | int64 ) interface\n"
        "int32 integer type\n"
        "long ( camlint | nativeint | int64 ) x"
    )
    assert page_leads(text).at(text.index("long")) == ""


def test_wrapped_cell_text_does_not_end_a_table() -> None:
    text = (
        "Flag        Bit     Meaning\n"
        "hidden      2       not shown\n"
        "readonly    7       the user cannot change\n"
        "or interact with the field\n"
        "required    2       must have a value"
    )
    leads = page_leads(text)
    assert leads.at(text.index("or interact")) == "Flag Bit Meaning"
    assert leads.at(text.index("required")) == "Flag Bit Meaning"


def test_a_table_continued_on_the_next_page_carries_its_header() -> None:
    page1 = (
        "Prose before.\nOption      Default     Meaning\n"
        "-a          off         all\n-b          on          brief"
    )
    page2 = "-c          off         count\n-d          on          debug\n\nProse after the table."
    _, second = document_leads([page1, page2])
    assert second.at(0) == "Option Default Meaning"
    assert second.at(page2.index("-d")) == "Option Default Meaning"
    assert second.at(page2.index("Prose after")) == ""
    # Rows of another shape, or a page that does not start with rows, carry nothing.
    other_shape = "-c          off\n-d          on\n-e          off"
    _, third = document_leads([page1, other_shape])
    assert third.at(0) == ""
    assert third.at(other_shape.index("-d")) == "-c off"  # a table of its own
    prose_first = "Prose first.\n" + page2
    _, fourth = document_leads([page1, prose_first])
    assert fourth.at(prose_first.index("-c")) == ""
    # A page left out (a contents page) ends the table.
    assert document_leads([page1, None, page2])[2].at(0) == ""


def test_an_item_inside_a_list_continues_its_lead_in() -> None:
    leads = page_leads(LIST)
    lead = "The following statements are allowed in the body of a loop:"
    assert leads.at(LIST.index("1. assignment")) == lead
    assert leads.at(LIST.index("and stop")) == lead
    assert leads.at(LIST.index("3. display")) == lead
    assert leads.at(0) == ""
    assert leads.at(LIST.index("in the body")) == ""
    assert leads.at(LIST.index("A paragraph after")) == ""


@pytest.mark.parametrize("bullet", ["•", "-", "*", "a)", "(2)"])
def test_bulleted_lists_have_lead_ins_too(bullet: str) -> None:
    text = f"Supported devices:\n{bullet} sx18\n{bullet} sx28\n{bullet} sx48"
    assert page_leads(text).at(text.index("sx28") - len(bullet) - 1) == "Supported devices:"


def test_a_list_ends_where_a_new_paragraph_or_heading_starts() -> None:
    """PDF text has no blank line after a list: a capitalised line after a sentence's
    end, or a short numbered heading, ends it."""
    items = (
        "The tool does two things:\n"
        "• it writes the data section first,\n"
        "even when nothing is initialised\n"
        "• it places the data at the lowest address"
    )
    paragraph = items + ".\nThe output file is useful for simulating the design.\nmore of it"
    heading = items + "\n3.3 gplink outputs\ngplink creates an executable"
    for text in (paragraph, heading):
        leads = page_leads(text)
        assert leads.at(text.index("even when")) == "The tool does two things:"
        assert leads.at(text.index("• it places")) == "The tool does two things:"
        assert leads.at(text.index("more of it" if text is paragraph else "gplink creates")) == ""


def test_items_without_a_lead_in_carry_nothing() -> None:
    text = "A sentence that ends plainly.\n1. first\n2. second"
    assert page_leads(text).at(text.index("2. second")) == ""


def test_a_list_continued_on_the_next_page_carries_its_lead_in() -> None:
    page1 = "Do this:\n1. first step\n2. second step"
    page2 = "3. third step\n4. fourth step\n\nUnrelated prose."
    _, second = document_leads([page1, page2])
    assert second.at(page2.index("4.")) == "Do this:"
    assert second.at(page2.index("Unrelated")) == ""


def test_a_lead_from_before_a_section_does_not_apply_in_it() -> None:
    leads = page_leads(TABLE)
    row = TABLE.index("canCopy")
    assert leads.at(row, section_start=TABLE.index("canPrint")) == ""
    assert leads.at(row, section_start=0) == "Setting Default Meaning"


KEYED = (
    "The linker takes these options on its command line, each with a short and a long form.\n"
    "Option Long option Meaning\n"
    "-a <format> --hex-format <format> Produce a hex file in one of four formats\n"
    "-c --object Output an executable object\n"
    "-d --debug Display debug messages\n"
    "-m --map Output a map file\n"
    "After the table, the manual goes on with a paragraph of prose that fills its lines.\n"
    "It wraps at the full width of the page, as paragraphs in manuals usually do here."
)


def test_rows_joined_by_single_spaces_continue_a_header_of_plain_words() -> None:
    leads = page_leads(KEYED)
    assert leads.at(KEYED.index("-d --debug")) == "Option Long option Meaning"
    assert leads.at(KEYED.index("-m --map")) == "Option Long option Meaning"
    assert leads.at(KEYED.index("It wraps")) == ""


@pytest.mark.parametrize(
    "header",
    [
        "The widget height",  # a sentence, not a header row: few capitalised words
        "Installing the tools",
    ],
)
def test_a_sentence_or_heading_before_prose_is_not_a_table_header(header: str) -> None:
    prose = (
        "the configuration script examines the facilities available on your computer and then\n"
        "generates a custom makefile and custom definition files for the build that follows it\n"
        "when the compiler is recent enough to support the basic commands of the language.\n"
        "short last line."
    )
    text = f"{header}\n{prose}"
    assert page_leads(text).at(text.index("when the")) == ""


def test_code_with_aligned_comments_is_not_a_table() -> None:
    text = "x = 460    # available width\ny = 800    # available height\nz = 10     # margin"
    assert page_leads(text).at(text.index("z =")) == ""
