from __future__ import annotations

import pytest

from services.generator.thinking import ThinkFilter


def run(deltas: list[str]) -> tuple[list[str], ThinkFilter]:
    cleaner = ThinkFilter()
    out = [cleaner.feed(d) for d in deltas]
    out.append(cleaner.finish())
    return [piece for piece in out if piece], cleaner


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (
            "<think>The user asks about refunds.</think>\n\nRefunds take 14 days [1].",
            "Refunds take 14 days [1].",
        ),
        ("  \n<think>a < b </thi nk></think>It is 3.", "It is 3."),
        ("Refunds take 14 days [1].  \n", "Refunds take 14 days [1]."),
        ("An <think> tag later is kept </think> as text.", "An <think> tag later is kept </think> as text."),
        ("<thin", "<thin"),
        ("<think>never finished", ""),
        ("   ", ""),
    ],
)
def test_every_split_of_the_stream_gives_the_same_answer(text: str, answer: str) -> None:
    for cut in range(len(text) + 1):
        for second in range(cut, len(text) + 1):
            pieces, _ = run([text[:cut], text[cut:second], text[second:]])
            assert "".join(pieces) == answer, (cut, second)
    pieces, _ = run(list(text))  # one character at a time
    assert "".join(pieces) == answer


def test_answer_text_flows_on_at_once() -> None:
    cleaner = ThinkFilter()
    assert cleaner.feed("<think>x</think>") == ""
    assert cleaner.feed("  Refunds") == "Refunds"
    assert cleaner.feed(" take ") == " take"  # trailing space held back...
    assert cleaner.feed("14 days.") == " 14 days."  # ...until text follows
    assert cleaner.finish() == ""


def test_an_unfinished_thought_is_reported() -> None:
    pieces, cleaner = run(["<think>", "still thinking"])
    assert pieces == []
    assert cleaner.thought and cleaner.in_thought
    pieces, cleaner = run(["<think>done</think>", "Yes."])
    assert pieces == ["Yes."]
    assert cleaner.thought and not cleaner.in_thought
