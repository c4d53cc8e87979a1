from __future__ import annotations

import asyncio
import time

import pytest

from libs.common.models import Hit
from services.generator.extractive import ExtractiveAnswerer
from services.generator.prompt import NOTHING_RELEVANT, cited_numbers


def _hit(text: str, *, filename: str, page: int, score: float) -> Hit:
    return Hit(document_id=f"id-{filename}", filename=filename, page=page, score=score, text=text)


HITS = [
    _hit(
        "Our company was founded in 1998 in Lyon. The head office has 40 employees. "
        "Opening hours are 9 to 5 on weekdays.",
        filename="about.pdf",
        page=1,
        score=0.62,
    ),
    _hit(
        "Refund policy\nCustomers can request a refund within 30 days of purchase. "
        "Refunds are paid back to the original payment card within 14 days. "
        "Shipping costs are not refunded.",
        filename="terms.pdf",
        page=7,
        score=0.55,
    ),
    _hit(
        "Gift cards are valid for one year. They cannot be exchanged for cash.",
        filename="giftcards.md",
        page=2,
        score=0.41,
    ),
]


def test_picks_the_relevant_sentence_and_cites_its_source() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=1)
    result = answerer.compose("How long does it take to get a refund paid back to my card?", HITS)
    assert result.mode == "extractive"
    assert result.answer == "Refunds are paid back to the original payment card within 14 days [2]."
    assert len(result.citations) == 1
    c = result.citations[0]
    assert (c.n, c.document_id, c.filename, c.page, c.score) == (2, "id-terms.pdf", "terms.pdf", 7, 0.55)
    assert c.snippet == "Refunds are paid back to the original payment card within 14 days."


def test_several_sentences_across_sources_each_cited() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3)
    result = answerer.compose("Can gift cards be exchanged for a refund in cash?", HITS)
    assert "They cannot be exchanged for cash [3]." in result.answer
    numbers = cited_numbers(result.answer)
    assert 3 in numbers
    assert numbers[0] == 3  # the best-matching source comes first
    assert sorted(numbers) == [c.n for c in result.citations]
    by_n = {c.n: c for c in result.citations}
    assert by_n[3].filename == "giftcards.md"
    assert by_n[3].page == 2
    assert "They cannot be exchanged for cash." in by_n[3].snippet
    assert len(result.answer.split("[")) - 1 <= 3


def test_nothing_relevant_says_so_without_citations() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3)
    result = answerer.compose("What is the airspeed velocity of an unladen swallow?", HITS)
    assert result.answer == NOTHING_RELEVANT
    assert result.citations == []
    assert result.mode == "extractive"


@pytest.mark.parametrize("question", ["", "What is it?", "   "])
def test_question_without_content_words_is_nothing_relevant(question: str) -> None:
    result = ExtractiveAnswerer(min_score=0.0, max_sentences=3).compose(question, HITS)
    assert result.answer == NOTHING_RELEVANT
    assert result.citations == []


def test_no_hits_is_nothing_relevant() -> None:
    result = ExtractiveAnswerer(min_score=0.2, max_sentences=3).compose("refund policy", [])
    assert result.answer == NOTHING_RELEVANT
    assert result.citations == []


def test_low_score_hits_are_ignored() -> None:
    answerer = ExtractiveAnswerer(min_score=0.5, max_sentences=3)
    # Only the gift card hit mentions cash, and it scores below min_score.
    result = answerer.compose("Can a gift be exchanged for cash?", HITS)
    assert result.answer == NOTHING_RELEVANT
    assert result.citations == []

    low_first = [_hit("Refunds take 14 days.", filename="old.pdf", page=1, score=0.1), *HITS]
    result = answerer.compose("how many days do refunds take", low_first)
    assert "old.pdf" not in {c.filename for c in result.citations}
    # Sources are numbered among the hits used as evidence.
    assert [c.filename for c in result.citations if c.n == 2] == ["terms.pdf"]


def test_duplicate_sentences_from_overlapping_chunks_are_quoted_once() -> None:
    text = "Refunds are paid within 14 days. Shipping costs are not refunded."
    hits = [
        _hit(text, filename="terms.pdf", page=7, score=0.6),
        _hit(text, filename="terms.pdf", page=7, score=0.59),
    ]
    result = ExtractiveAnswerer(min_score=0.2, max_sentences=3).compose("refunds paid days", hits)
    assert result.answer.count("Refunds are paid within 14 days") == 1


def test_at_most_per_source_sentences_from_one_hit() -> None:
    hit = _hit(
        "Refunds need a receipt. Refunds need the box. Refunds need a form. Refunds need a reason.",
        filename="r.pdf",
        page=1,
        score=0.9,
    )
    result = ExtractiveAnswerer(min_score=0.2, max_sentences=5).compose("what do refunds need", [hit])
    assert result.answer.count("[1]") == 2
    assert len(result.citations) == 1


def test_deterministic() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3)
    first = answerer.compose("refund card days cash", HITS)
    for _ in range(3):
        assert answerer.compose("refund card days cash", HITS) == first


def test_the_answer_streams_word_by_word_through_on_token() -> None:
    pieces: list[str] = []

    async def on_token(token: str) -> None:
        pieces.append(token)

    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3)
    question = "Can gift cards be exchanged for a refund in cash?"
    result = asyncio.run(answerer.answer(question, HITS, on_token=on_token, deadline=time.time() + 30))
    assert result == answerer.compose(question, HITS)
    assert "".join(pieces) == result.answer
    assert len(pieces) == len(result.answer.split())
    assert pieces[0] == result.answer.split()[0] + " "


def test_nothing_relevant_streams_too() -> None:
    pieces: list[str] = []

    async def on_token(token: str) -> None:
        pieces.append(token)

    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3)
    result = asyncio.run(answerer.answer("swallow airspeed", HITS, on_token=on_token, deadline=time.time()))
    assert result.answer == NOTHING_RELEVANT
    assert "".join(pieces) == NOTHING_RELEVANT


def test_abstaining_is_said_and_quoting_sentences_spans_them_in_the_page() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3)
    none = answerer.compose("What is the airspeed velocity of an unladen swallow?", HITS)
    assert none.abstained and none.citations == []
    page = "Title\n\n" + HITS[1].text
    hit = HITS[1].model_copy(update={"char_start": 7, "char_end": len(page)})
    result = answerer.compose("How long does a refund take to be paid back to my card?", [hit])
    assert not result.abstained
    [c] = result.citations
    assert c.char_start is not None and c.char_end is not None
    marked = " ".join(page[c.char_start : c.char_end].split())
    assert marked.startswith(c.snippet.split(". ")[0]) and marked.endswith(c.snippet.split(". ")[-1])


MANUAL = _hit(
    "The parser reads tables, lists and footnotes in every input format it supports. "
    "Nested tables are not supported by the parser. "
    "The parser waits for more input before it gives up on an ambiguous sequence. "
    "That wait defaults to 500 milliseconds.",
    filename="manual.pdf",
    page=4,
    score=0.6,
)


def test_a_question_with_a_negation_gets_the_sentence_that_says_not() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=1)
    result = answerer.compose("Which kind of input does the parser not support?", [MANUAL])
    assert result.answer == "Nested tables are not supported by the parser [1]."


def test_a_how_long_question_gets_the_sentence_with_the_number_and_its_unit() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=1)
    result = answerer.compose("How long does the parser wait for more input by default?", [MANUAL])
    assert "500 milliseconds" in result.answer


def test_weak_evidence_abstains_with_no_citations() -> None:
    # The collection is about refunds and gift cards; the question shares one word with it.
    question = "How many gift shops does the company run abroad?"
    assert not ExtractiveAnswerer(min_score=0.2, max_sentences=3).compose(question, HITS).abstained
    result = ExtractiveAnswerer(min_score=0.2, max_sentences=3, min_evidence=0.58).compose(question, HITS)
    assert result.abstained and not result.answerable
    assert result.answer == NOTHING_RELEVANT and result.citations == []
    # Strong evidence still answers under the same threshold.
    answered = ExtractiveAnswerer(min_score=0.2, max_sentences=3, min_evidence=0.58).compose(
        "Within how many days are refunds paid back to the original payment card?", HITS
    )
    assert answered.answerable and not answered.abstained and answered.citations
    assert "14 days" in answered.answer


def test_quotes_are_clean_sentences_and_their_offsets_still_point_into_the_page() -> None:
    header = "ACME Router Manual, chapter 3"
    page = (
        f"{header}\nThe router keeps its con\ufb01guration in /etc/router.conf, which is re-\n"
        "read when the service restarts. Other text follows here.\n"
    )
    # The word cut at the line end is whole elsewhere in the evidence: it is joined again.
    other = f"{header}\nUnrelated text on another page, reread often."
    hits = [
        Hit(
            document_id="m",
            filename="router.pdf",
            page=3,
            score=0.6,
            text=page,
            char_start=0,
            char_end=len(page),
        ),
        Hit(document_id="m", filename="router.pdf", page=9, score=0.5, text=other),
    ]
    result = ExtractiveAnswerer(min_score=0.2, max_sentences=1).compose(
        "Where does the router keep its configuration?", hits
    )
    quote = (
        "The router keeps its configuration in /etc/router.conf, which is reread when the service restarts."
    )
    assert result.answer == quote.removesuffix(".") + " [1]."
    assert "chapter" not in result.answer  # the running header is not quoted
    [c] = result.citations
    assert c.snippet == quote
    assert c.char_start is not None and c.char_end is not None
    assert page[c.char_start : c.char_end] == (
        "The router keeps its con\ufb01guration in /etc/router.conf, which is re-\n"
        "read when the service restarts."
    )


def test_the_result_says_whether_the_documents_answer_the_question() -> None:
    answerer = ExtractiveAnswerer(min_score=0.2, max_sentences=3)
    dumped = answerer.compose("How long does it take to get a refund paid back?", HITS).model_dump()
    assert dumped["answerable"] is True and dumped["abstained"] is False
    none = answerer.compose("What is the airspeed velocity of an unladen swallow?", HITS).model_dump()
    assert none["answerable"] is False and none["abstained"] is True and none["citations"] == []


def test_a_sentence_about_this_variable_in_a_definition_list_brings_the_variables_name() -> None:
    page = (
        "This variable is read-only.\n"
        "SHLVL\n"
        "Incremented by one each time an instance of the shell is started.\n"
        "SRANDOM\n"
        "This variable expands to a 32-bit pseudo-random number each time it is referenced. The random\n"
        "number generator is not linear on systems that support /dev/urandom. The random number\n"
        "generator cannot be seeded, so assignments to this variable have no effect.\n"
    )
    hit = _hit(page, filename="bash.pdf", page=85, score=0.6).model_copy(
        update={"char_start": 0, "char_end": len(page)}
    )
    answer = ExtractiveAnswerer(min_score=0.2, max_sentences=1).compose(
        "Which random number variable cannot be seeded by assigning to it?", [hit]
    )
    assert "assignments to this variable have no effect" in answer.answer
    # The entry's first sentence names the variable; the sentence after the term is not SHLVL's.
    assert "SRANDOM This variable expands" in answer.answer
    assert "SHLVL" not in answer.answer
    (cited,) = answer.citations
    assert page[cited.char_start : cited.char_end].startswith("SRANDOM\nThis variable")


def test_a_word_wrapped_onto_a_line_of_its_own_does_not_start_an_entry() -> None:
    page = "Setting it to False will result in a\nNotImplementedError\nThe next argument repeats rows.\n"
    hit = _hit(page, filename="guide.pdf", page=3, score=0.6)
    answer = ExtractiveAnswerer(min_score=0.2, max_sentences=1).compose(
        "What does setting it to False result in?", [hit]
    )
    assert "will result in a NotImplementedError" in answer.answer


def test_another_form_or_a_misspelling_of_a_long_question_word_still_matches_it() -> None:
    page = (
        "Arithmetic operators are grouped by their precedence. "
        "The exponentiaion operators go in the other direction, from right to left."
    )
    hit = _hit(page, filename="gmpl.pdf", page=16, score=0.6)
    answer = ExtractiveAnswerer(min_score=0.2, max_sentences=1).compose(
        "In which direction are exponentiation operators grouped?", [hit]
    )
    assert "from right to left" in answer.answer
