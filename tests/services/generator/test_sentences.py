from __future__ import annotations

from libs.common.models import Hit
from services.generator.quotes import repeated_lines, sentences_of
from services.generator.sentences import clean_quote, sentence_spans


def test_each_sentence_spans_its_text_in_the_page() -> None:
    text = "Intro line.\n\nThe timeout is given in milli-\nseconds. It defaults to 500 ms.\n- a list item"
    sentences = sentence_spans(text, vocabulary={"milliseconds"})
    assert [s.quote for s in sentences] == [
        "Intro line.",
        "The timeout is given in milliseconds.",
        "It defaults to 500 ms.",
        "- a list item",
    ]
    for s in sentences:
        # The span holds the sentence as written: the same words once cleaned.
        assert clean_quote(text[s.start : s.end], {"milliseconds"}) == s.quote


def test_a_quote_joins_words_cut_at_line_ends_and_spells_out_ligatures() -> None:
    raw = "the con\ufb01guration \ufb01le is read\n  at start-\nup"
    # Joined when the text around has the word whole; a compound keeps its hyphen.
    assert clean_quote(raw, {"startup"}) == "the configuration file is read at startup"
    assert clean_quote(raw) == "the configuration file is read at start-up"
    # A hyphen that is not at a line break stays; so does one before a capital or digit.
    assert clean_quote("a well-known\nGNU-\nLinux x86-\n64 build") == "a well-known GNU-Linux x86-64 build"
    assert clean_quote("soft\u00adhyphen\u00ad\nated") == "softhyphenated"


def test_long_unpunctuated_text_is_cut_into_spans_that_still_point_into_it() -> None:
    text = "word " * 200
    sentences = sentence_spans(text, max_chars=100)
    assert len(sentences) == 10
    assert all(len(s.quote) <= 100 and text[s.start : s.end] == s.quote for s in sentences)


def hit(text: str, page: int, document_id: str = "d") -> Hit:
    return Hit(document_id=document_id, filename="m.pdf", page=page, score=0.5, text=text)


HEADER = "BASH(1) General Commands Manual BASH(1)"


def test_a_line_repeated_on_several_pages_is_never_quoted() -> None:
    hits = [
        hit(f"{HEADER}\nWhen bash is interactive, it ignores\nSIGTERM. Footer page 38", 38),
        hit(f"{HEADER}\nThe shell reads its startup files. Footer page 12", 12),
        # The same line on one page only, or in another document, is text.
        hit("Only here: a line seen once.\nOnly here: a line seen once.", 5),
    ]
    skip = repeated_lines(hits)
    # The header only: "Footer page n" is not a line of its own, "Only here" is on one page.
    assert len(skip) == 1
    quotes = [s.quote for s in sentences_of(hits[0].text, skip, 300)]
    assert quotes == ["When bash is interactive, it ignores SIGTERM.", "Footer page 38"]
    first = sentences_of(hits[0].text, skip, 300)[0]
    assert hits[0].text[first.start : first.end] == "When bash is interactive, it ignores\nSIGTERM."


def test_a_page_number_in_a_running_footer_does_not_hide_it() -> None:
    hits = [hit("Text one.\nGNU Bash 5.2 page 41", 41), hit("Text two.\nGNU Bash 5.2 page 42", 42)]
    assert [s.quote for s in sentences_of(hits[1].text, repeated_lines(hits), 300)] == ["Text two."]


def test_an_abbreviation_or_initial_at_the_end_of_a_long_piece_does_not_end_the_sentence() -> None:
    lead = "This long sentence about the parser's options runs on for a while and then cites "
    text = f"{lead}e.g. Table 3 of the manual. See J. R. Smith for more. Then a new one starts."
    quotes = [s.quote for s in sentence_spans(text)]
    assert quotes == [
        f"{lead}e.g. Table 3 of the manual.",
        "See J. R. Smith for more.",
        "Then a new one starts.",
    ]
    # A capital letter ending a long word is no initial.
    assert [s.quote for s in sentence_spans("It runs on x86 and on ARM. Then it stops.")] == [
        "It runs on x86 and on ARM.",
        "Then it stops.",
    ]
