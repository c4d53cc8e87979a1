"""Small, deterministic text helpers: sentences, content words, light stemming."""

from __future__ import annotations

import re
from functools import lru_cache

from services.generator.sentences import normalize_space, sentence_spans

# Function words that carry no topic: left out when matching a question to text.
_STOPWORDS = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing done down during each either
    else ever few for from further get gets got had has have having he her here hers herself him
    himself his how i if in into is it its itself just let me might more most must my myself no
    nor not now of off on once only or other ought our ours ourselves out over own please same
    shall she should so some such tell than that the their theirs them themselves then there
    these they this those through to too under until up upon us very was we were what whatever
    when where whether which while who whom whose why will with within without would yes yet you
    your yours yourself yourselves
    don doesn didn isn aren wasn weren hasn haven hadn won wouldn shouldn couldn cannot can't
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS.split())

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_PIECE = re.compile(r"\s*\S+\s*|\s+")
_VOWEL = re.compile(r"[aeiouy]")


def _strip_final_e(word: str) -> str:
    if len(word) > 3 and word.endswith("e") and not word.endswith("ee"):
        return word[:-1]
    return word


# A language's inflected words are few next to the words read: each is stemmed once.
@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """Light suffix stripping so that "refunds", "refunded" and "refunding" match.

    Deliberately conservative: it only has to map common inflections of one word to the
    same key, not to produce a dictionary form.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    for suffix in ("ing", "ed"):
        if not word.endswith(suffix) or (suffix == "ed" and word.endswith("eed")):
            continue
        base = word[: -len(suffix)]
        if len(base) < 3 or not _VOWEL.search(base):
            continue
        if len(base) >= 4 and base[-1] == base[-2] and base[-1] not in "lsz":
            base = base[:-1]
        return _strip_final_e(base)
    if word.endswith("ly") and len(word) > 5:
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return _strip_final_e(word)


def words(text: str) -> list[str]:
    """Lowercased word tokens (letters and digits; a trailing 's is dropped)."""
    lowered = text.lower()
    if "\u2019" in lowered:
        lowered = lowered.replace("\u2019", "'")
    tokens: list[str] = _WORD.findall(lowered)
    if "'" not in lowered:
        return tokens
    return [token[:-2] if token.endswith("'s") else token for token in tokens]


def content_terms(text: str) -> list[str]:
    """Stemmed content words of ``text`` in order, stopwords and single letters left out."""
    return content_words(words(text))


def content_words(tokens: list[str]) -> list[str]:
    """``content_terms`` of text already cut into ``words``."""
    return [term for token in tokens if (term := _content_term(token))]


# Like ``stem``: each distinct word is looked at once.
@lru_cache(maxsize=1 << 16)
def _content_term(word: str) -> str:
    """The word's stem, or "" for a word that carries no topic."""
    # "don't" says nothing about the topic; "we're" is "we".
    token = "" if word.endswith("n't") else word.split("'", 1)[0]
    if not token or token in STOPWORDS or (len(token) == 1 and not token.isdigit()):
        return ""
    return stem(token)


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Split ``text`` into sentences, each quoted cleanly (see ``sentences.clean_quote``).

    Text extracted from PDFs often lacks punctuation, so pieces longer than ``max_chars``
    are cut further; no returned sentence is much longer than ``max_chars`` unless it is a
    single word.
    """
    return [sentence.quote for sentence in sentence_spans(text, max_chars)]


def clip(text: str, max_chars: int) -> str:
    """``text`` with whitespace collapsed, cut at a word boundary to at most ``max_chars``."""
    text = normalize_space(text)
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "\u2026"


def locate(text: str, snippet: str, start: int = 0) -> tuple[int, int] | None:
    """Where ``snippet`` (a sentence or clip of ``text``: its whitespace collapsed, maybe
    ending in an ellipsis) is in ``text`` at or after ``start``, as (start, end); None if not there."""
    body = snippet.strip().removesuffix("\u2026").strip()
    tokens = body.split()
    if not tokens:
        return None
    found = re.compile(r"\s+".join(re.escape(t) for t in tokens)).search(text, start)
    return (found.start(), found.end()) if found else None


def word_pieces(text: str) -> list[str]:
    """``text`` cut into words, each with the whitespace after it: the pieces join to ``text``."""
    return _PIECE.findall(text)
