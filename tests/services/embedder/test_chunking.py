from __future__ import annotations

import itertools
import random
import re

import pytest

from libs.common.models import Chunk
from services.embedder.chunking import chunk_pages
from services.embedder.parsing import Page


def sentence(tag: str, words: int) -> str:
    return " ".join(f"{tag}w{j}" for j in range(words)) + "."


def prose(seed: int, sentences: int = 60) -> str:
    """Sentences of 3..30 distinct words, a paragraph break every few sentences."""
    rng = random.Random(seed)
    parts = []
    for i in range(sentences):
        parts.append(sentence(f"p{seed}s{i}", rng.randint(3, 30)))
        parts.append("\n\n" if rng.random() < 0.2 else " ")
    return "".join(parts)


def chunk(pages: list[Page], size: int = 40, overlap: int = 10, filename: str = "doc.txt") -> list[Chunk]:
    return chunk_pages(pages, document_id="doc-1", filename=filename, size_words=size, overlap_words=overlap)


def overlap_words(a: Chunk, b: Chunk) -> int:
    """Words ``b`` repeats from the end of ``a`` (all words are unique in these texts)."""
    first = b.text.split()[0]
    words = a.text.split()
    return len(words) - words.index(first) if first in words else 0


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (8, 3), (40, 10), (120, 20), (50, 49)])
def test_limits_offsets_and_indices(size: int, overlap: int) -> None:
    pages = [Page(1, prose(1)), Page(2, prose(2)), Page(3, "")]
    chunks = chunk(pages, size, overlap)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 1 <= len(c.text.split()) <= size
        assert c.page == c.page_end
        assert pages[c.page - 1].text[c.char_start : c.char_end] == c.text
        assert c.text == c.text.strip()
        assert (c.document_id, c.filename) == ("doc-1", "doc.txt")


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (30, 5), (40, 10), (120, 20)])
def test_chunks_cover_every_word_in_order(size: int, overlap: int) -> None:
    text = prose(3)
    chunks = chunk([Page(1, text)], size, overlap)
    covered: set[int] = set()
    for c in chunks:
        covered.update(
            m.start() for m in re.finditer(r"\S+", text[: c.char_end]) if m.start() >= c.char_start
        )
    assert covered == {m.start() for m in re.finditer(r"\S+", text)}
    starts = [c.char_start for c in chunks]
    ends = [c.char_end for c in chunks]
    assert starts == sorted(set(starts))
    assert ends == sorted(set(ends))


def test_overlap_is_about_the_requested_size() -> None:
    chunks = chunk([Page(1, prose(4, sentences=120))], size=60, overlap=12)
    overlaps = [overlap_words(a, b) for a, b in itertools.pairwise(chunks)]
    assert len(overlaps) > 5
    assert all(6 <= o <= 18 for o in overlaps), overlaps


def test_no_overlap() -> None:
    chunks = chunk([Page(1, prose(5))], size=40, overlap=0)
    assert all(overlap_words(a, b) == 0 for a, b in itertools.pairwise(chunks))
    assert sum(len(c.text.split()) for c in chunks) == len(prose(5).split())


def test_cuts_at_sentence_ends_when_possible() -> None:
    text = " ".join(sentence(f"s{i}", 10) for i in range(20))
    chunks = chunk([Page(1, text)], size=35, overlap=0)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(len(c.text.split()) == 30 for c in chunks[:-1])


def test_prefers_paragraph_breaks() -> None:
    para_a = " ".join(sentence(f"a{i}", 6) for i in range(3))  # 18 words
    para_b = " ".join(sentence(f"b{i}", 6) for i in range(3))
    chunks = chunk([Page(1, f"{para_a}\n\n{para_b}")], size=30, overlap=0)
    assert [c.text for c in chunks] == [para_a, para_b]


def test_long_sentence_is_split_by_words() -> None:
    text = sentence("long", 100)
    chunks = chunk([Page(1, text)], size=30, overlap=5)
    assert len(chunks) >= 4
    assert all(len(c.text.split()) <= 30 for c in chunks)
    assert chunks[0].text.split() == text.split()[:30]
    assert chunks[-1].text.endswith("longw99.")


def test_short_page_is_one_chunk() -> None:
    chunks = chunk([Page(7, "  \n Just a few words here.\n")], size=40, overlap=10)
    assert len(chunks) == 1
    c = chunks[0]
    assert (c.text, c.page, c.page_end, c.chunk_index) == ("Just a few words here.", 7, 7, 0)
    assert (c.char_start, c.char_end) == (4, 26)


def test_pages_are_not_merged_and_keep_numbers() -> None:
    pages = [Page(1, "alpha " * 50), Page(2, "  "), Page(3, "\n\t"), Page(4, "delta " * 5), Page(5, "")]
    chunks = chunk(pages, size=40, overlap=10)
    assert [c.page for c in chunks] == [1, 1, 4]
    assert chunks[-1].text == "delta delta delta delta delta"
    assert [c.chunk_index for c in chunks] == [0, 1, 2]


def test_whitespace_only_document_has_no_chunks() -> None:
    assert chunk([Page(1, " \n\n "), Page(2, "")]) == []
    assert chunk([]) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, -1)])
def test_bad_sizes(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="_words"):
        chunk([Page(1, "some text")], size, overlap)


@pytest.mark.parametrize("overlap", [10, 20])
def test_overlap_not_below_size_is_halved(overlap: int, caplog: pytest.LogCaptureFixture) -> None:
    text = sentence("x", 100)
    chunks = chunk([Page(1, text)], size=10, overlap=overlap)
    assert [len(c.text.split()) for c in chunks] == [10] * 19
    assert all(overlap_words(a, b) == 5 for a, b in itertools.pairwise(chunks))
    assert "not smaller than the chunk size" in caplog.text


MARKDOWN = """Preamble before any heading.

# Intro

Welcome text.

## Setup

Install it with pip.

```sh
# not a heading, a shell comment
pip install documind
```

## Usage ##
Run it.
# Reference
### Deep
Details here.
"""


def test_markdown_heading_paths() -> None:
    page = Page(1, MARKDOWN)
    chunks = chunk([page], size=100, overlap=10, filename="guide.md")
    assert [c.heading for c in chunks] == ["", "Intro", "Intro > Setup", "Intro > Usage", "Reference > Deep"]
    assert chunks[2].text.startswith("## Setup")
    assert "pip install documind" in chunks[2].text
    assert chunks[4].text == "# Reference\n### Deep\nDetails here."
    for c in chunks:
        assert MARKDOWN[c.char_start : c.char_end] == c.text


def test_markdown_long_section_keeps_heading() -> None:
    text = "# Big\n\n" + prose(6)
    chunks = chunk([Page(1, text)], size=30, overlap=5, filename="big.markdown")
    assert len(chunks) > 3
    assert {c.heading for c in chunks} == {"Big"}


def test_plain_text_ignores_markdown_headings() -> None:
    chunks = chunk([Page(1, MARKDOWN)], size=100, overlap=10, filename="guide.txt")
    assert len(chunks) == 1
    assert chunks[0].heading == ""


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("## Setup ##", "Setup"),  # a closing sequence is not part of the title
        ("# Setup #\t ", "Setup"),
        ("# C#", "C#"),  # "#" right after a word is
        ("#  Two  words ", "Two  words"),
        ("### ###", ""),  # only a closing sequence: an empty heading
    ],
)
def test_markdown_heading_titles(line: str, heading: str) -> None:
    chunks = chunk([Page(1, f"{line}\nBody text.")], filename="notes.md")
    assert [c.heading for c in chunks] == [heading]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("blank", [" ", "\t"])
def test_a_heading_padded_with_a_long_run_of_blanks_is_read_in_one_pass(blank: str) -> None:
    # A hostile upload: one Markdown heading of 100,000 blanks between two words. The
    # pattern that read headings backtracked quadratically on it (about two minutes
    # here, every other job's embedding waiting); read in one pass it takes
    # milliseconds.
    line = "# a" + blank * 100_000 + "b"
    chunks = chunk([Page(1, f"{line}\nBody text.")], size=100, overlap=10, filename="hostile.md")
    assert chunks[0].heading == "a" + blank * 100_000 + "b"
