"""Token-aware chunking: fake counters for speed, the real model's tokenizer once."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from libs.common.models import Chunk
from services.embedder import parse_job
from services.embedder.backends import LocalEmbedder
from services.embedder.chunking import chunk_pages
from services.embedder.parsing import Page, Section
from tests.services.embedder.test_chunking import prose, sentence

# These tests only chunk: the handler never talks to Valkey, and this client never connects.
UNCONNECTED = aioredis.Redis()


def word_pieces(text: str) -> int:
    """Additive like WordPiece: a piece per three characters of each word."""
    return sum(math.ceil(len(word) / 3) for word in text.split())


def by_characters(text: str) -> int:
    """Not additive over words: spaces count too."""
    return math.ceil(len(text) / 4)


class Counting:
    """A counter that records how much text it was asked about."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self.count = count
        self.calls = 0
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        self.chars += len(text)
        return self.count(text)


def chunk(
    pages: list[Page],
    count: Callable[[str], int],
    max_tokens: int,
    *,
    size_words: int = 10_000,
    overlap_words: int = 0,
    size_tokens: int | None = None,
    overlap_tokens: int | None = None,
    filename: str = "doc.txt",
) -> list[Chunk]:
    return chunk_pages(
        pages,
        "doc-1",
        filename,
        size_words,
        overlap_words,
        count_tokens=count,
        max_tokens=max_tokens,
        size_tokens=size_tokens,
        overlap_tokens=overlap_tokens,
    )


def check_guarantees(pages: list[Page], chunks: list[Chunk], count: Callable[[str], int], most: int) -> None:
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert count(c.text) <= most, c.text
        assert c.page == c.page_end
        assert pages[c.page - 1].text[c.char_start : c.char_end] == c.text
        assert c.text and c.text == c.text.strip()
    for page in pages:
        own = [c for c in chunks if c.page == page.number]
        starts = [c.char_start for c in own]
        ends = [c.char_end for c in own]
        assert starts == sorted(set(starts))
        assert ends == sorted(set(ends))
        # Every non-space character is in some chunk.
        covered = [False] * len(page.text)
        for c in own:
            covered[c.char_start : c.char_end] = [True] * (c.char_end - c.char_start)
        assert all(covered[i] for i, ch in enumerate(page.text) if not ch.isspace())


@pytest.mark.parametrize("count", [word_pieces, by_characters])
@pytest.mark.parametrize(
    ("most", "size", "overlap"), [(20, None, None), (60, 50, 10), (254, 200, 32), (30, 30, 0)]
)
def test_no_chunk_exceeds_max_tokens(
    count: Callable[[str], int], most: int, size: int | None, overlap: int | None
) -> None:
    pages = [Page(1, prose(1)), Page(2, ""), Page(3, prose(2))]
    chunks = chunk(pages, count, most, size_tokens=size, overlap_tokens=overlap)
    check_guarantees(pages, chunks, count, most)
    assert {c.page for c in chunks} == {1, 3}


def test_windows_fill_up_to_the_size_in_tokens() -> None:
    text = prose(7, sentences=200)
    chunks = chunk([Page(1, text)], word_pieces, 100, size_tokens=80, overlap_tokens=0)
    sizes = [word_pieces(c.text) for c in chunks[:-1]]
    # The size is met on estimates (sentence counts spread over words): about, not exactly.
    assert all(sz <= 88 for sz in sizes), sizes
    assert sum(sizes) / len(sizes) > 55  # cut at sentence ends in the second half of the window


def test_cuts_at_sentence_ends_when_possible() -> None:
    text = " ".join(sentence(f"s{i}", 10) for i in range(30))
    chunks = chunk([Page(1, text)], word_pieces, 70)
    assert all(c.text.endswith(".") for c in chunks)


def test_overlap_is_about_the_requested_tokens() -> None:
    text = sentence("long", 600)  # no sentence starts to snap to
    chunks = chunk([Page(1, text)], word_pieces, 60, overlap_tokens=12)
    assert len(chunks) > 10
    for a, b in itertools.pairwise(chunks):
        shared = text[b.char_start : a.char_end]
        assert 8 <= word_pieces(shared) <= 16, shared


def test_overlap_in_words_without_overlap_tokens() -> None:
    text = sentence("w", 300)
    chunks = chunk([Page(1, text)], word_pieces, 40, overlap_words=4)
    for a, b in itertools.pairwise(chunks):
        assert len(text[b.char_start : a.char_end].split()) == 4


def test_the_word_limit_still_applies() -> None:
    pages = [Page(1, prose(3))]
    chunks = chunk(pages, word_pieces, 1000, size_words=25, overlap_words=5)
    assert all(len(c.text.split()) <= 25 for c in chunks)
    check_guarantees(pages, chunks, word_pieces, 1000)


def test_tokens_split_what_words_allow() -> None:
    # Long words: 30 words are far more than 40 tokens.
    text = " ".join(f"{'x' * 20}{i}." for i in range(200))
    pages = [Page(1, text)]
    chunks = chunk(pages, word_pieces, 40, size_words=30, overlap_words=5)
    check_guarantees(pages, chunks, word_pieces, 40)


@pytest.mark.parametrize("count", [word_pieces, by_characters])
def test_word_longer_than_the_limit_is_cut_into_pieces(count: Callable[[str], int]) -> None:
    blob = "".join(random.Random(3).choice("abcdef0123456789") for _ in range(3000))
    text = f"Before the blob. {blob} After the blob."
    pages = [Page(1, text)]
    chunks = chunk(pages, count, 25, overlap_tokens=5)
    check_guarantees(pages, chunks, count, 25)
    assert chunks[0].text.startswith("Before the blob.")
    assert chunks[-1].text.endswith("After the blob.")


def test_a_single_character_over_the_limit_is_kept_whole(caplog: pytest.LogCaptureFixture) -> None:
    def heavy(text: str) -> int:
        return 5 * len(text)

    chunks = chunk([Page(1, "ab")], heavy, 4)
    assert [c.text for c in chunks] == ["a", "b"]
    assert "a single character counts more than 4 tokens" in caplog.text


def test_sections_of_pages_are_kept() -> None:
    text = "Intro\n\nSome words here.\n\nNext\n\nMore words there."
    page = Page(1, text, sections=(Section(0, 23, "Intro"), Section(23, len(text), "Intro > Next")))
    chunks = chunk([page], word_pieces, 50)
    assert [(c.heading, c.text) for c in chunks] == [
        ("Intro", "Intro\n\nSome words here."),
        ("Intro > Next", "Next\n\nMore words there."),
    ]


def test_markdown_heading_paths_in_token_mode() -> None:
    text = "# Big\n\n" + prose(6)
    chunks = chunk([Page(1, text)], word_pieces, 50, filename="big.md")
    assert len(chunks) > 3
    assert {c.heading for c in chunks} == {"Big"}


def test_counting_is_not_quadratic() -> None:
    text = prose(9, sentences=3000) + " " + sentence("run", 3000)
    counter = Counting(word_pieces)
    chunks = chunk([Page(1, text)], counter, 200, size_tokens=200, overlap_tokens=32)
    check_guarantees([Page(1, text)], chunks, word_pieces, 200)
    # Each sentence once, each chunk about once: a few times the text, not its square.
    assert counter.chars < 4 * len(text)
    assert counter.calls < 3000 + 3 * len(chunks)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"max_tokens": None}, "max_tokens"), ({"max_tokens": 0}, "max_tokens")]
)
def test_bad_token_limits(kwargs: dict[str, int | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chunk_pages([Page(1, "text")], "d", "a.txt", 10, 0, count_tokens=word_pieces, **kwargs)


def test_overlap_tokens_not_below_size_is_halved(caplog: pytest.LogCaptureFixture) -> None:
    chunks = chunk([Page(1, sentence("y", 200))], word_pieces, 20, overlap_tokens=20)
    check_guarantees([Page(1, sentence("y", 200))], chunks, word_pieces, 20)
    assert "not smaller than the chunk size" in caplog.text


# ------------------------------------------------------------------ the real model

_VOCAB = [
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "internationalization",
    "photosynthesis",
    "3.14159",
    "https://example.com/a/b?c=d&e=f",
    "naïve",
    "café",
    "Zürich",
    "東京都",
    "日本語のテキスト",
    "€1,234.56",
    "(see",
    "§4.2)",
    "CO₂",
    "don't",
    "—",
    "x86_64",
    "SHA256:9f86d081884c7d65",
    "antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "😀🚀",
    "O'Neill",
    "Ελληνικά",
]


def realish_text(seed: int, paragraphs: int = 60) -> str:
    """Paragraphs of sentences from a few words to several hundred, with hard tokens mixed in."""
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(1, 6)):
            words = rng.choice([3, 12, 30, 80, 500])
            sentences.append(" ".join(rng.choice(_VOCAB) for _ in range(words)) + rng.choice(".!?;"))
        out.append(" ".join(sentences))
    return "\n\n".join(out) + " " + "Zz9" * 700 + " the end."


@pytest.fixture(scope="module")
def local_model() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.mark.slow
def test_real_tokenizer_no_chunk_exceeds_the_model_input(local_model: LocalEmbedder) -> None:
    most = local_model.max_text_tokens
    assert most == 254
    pages = [Page(1, realish_text(1)), Page(2, realish_text(2))]
    chunks = chunk(pages, local_model.count_tokens, most, size_tokens=200, overlap_tokens=32)
    check_guarantees(pages, chunks, local_model.count_tokens, most)
    sizes = [local_model.count_tokens(c.text) for c in chunks]
    assert max(sizes) <= most
    assert sum(sizes) / len(sizes) > 120


@pytest.mark.slow
def test_handler_uses_the_model_tokenizer(local_model: LocalEmbedder) -> None:
    from libs.common.settings import EmbedderSettings
    from services.embedder.handler import EmbedHandler

    handler = EmbedHandler(UNCONNECTED, local_model, EmbedderSettings(_env_file=None))
    text = realish_text(5, paragraphs=20)
    chunks = parse_job.chunk(handler.chunking, [Page(1, text)], "doc-1", "a.txt")
    sizes = [local_model.count_tokens(c.text) for c in chunks]
    assert max(sizes) <= 254
    # Sized in tokens (about 200), not in words.
    assert sum(sizes) / len(sizes) > 120
    # The parse sandbox counts with the tokenizer's JSON: the same counts as the model.
    counter = parse_job.token_counter(local_model.tokenizer_json)
    assert [counter(c.text) for c in chunks] == sizes


def test_handler_without_a_tokenizer_sizes_in_words() -> None:
    from libs.common.settings import EmbedderSettings
    from services.embedder.backends import HashEmbedder
    from services.embedder.handler import EmbedHandler

    settings = EmbedderSettings(_env_file=None, chunk_size_words=12, chunk_overlap_words=2)
    handler = EmbedHandler(UNCONNECTED, HashEmbedder(dim=8), settings)
    chunks = parse_job.chunk(handler.chunking, [Page(1, prose(4))], "doc-1", "a.txt")
    assert max(len(c.text.split()) for c in chunks) == 12


def test_handler_with_a_tokenizer_sizes_in_tokens() -> None:
    from libs.common.settings import EmbedderSettings
    from services.embedder.backends import HashEmbedder
    from services.embedder.handler import EmbedHandler

    class Tokenizing(HashEmbedder):
        """A backend that brings its tokenizer (as JSON): a token per word or punctuation mark."""

        max_text_tokens = 40
        tokenizer_json = whitespace_tokenizer_json()

    settings = EmbedderSettings(
        _env_file=None, chunk_size_words=8, chunk_size_tokens=30, chunk_overlap_tokens=5
    )
    handler = EmbedHandler(UNCONNECTED, Tokenizing(dim=8), settings)
    pages = [Page(1, prose(4))]
    chunks = parse_job.chunk(handler.chunking, pages, "doc-1", "a.txt")
    count = parse_job.token_counter(Tokenizing.tokenizer_json)
    check_guarantees(pages, chunks, count, 40)
    assert max(count(c.text) for c in chunks) <= 33  # about chunk_size_tokens
    assert max(len(c.text.split()) for c in chunks) > 8  # the word size does not apply


def whitespace_tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer.to_str()
