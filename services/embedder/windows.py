"""Word windows of one section of text: where chunks start and end.

A window ends at a paragraph or sentence boundary where one lies in its second
half, else at its size; the next one starts about the overlap earlier, at a
sentence start when one is near, and always reaches past the previous end.

With :class:`TokenLimits` windows are sized in the embedding model's tokens:
each sentence is counted once and its count spread over its words by length, so
no text is counted twice to size a window; each window is then counted once
more and shrunk to an earlier boundary while it exceeds ``max_tokens``. A word
longer than that on its own is cut into pieces by characters. With a ``prefix``
(what is embedded before a chunk starting at a given offset: its context), a
window is counted with its prefix, so what the model reads fits ``max_tokens``.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")
_PARAGRAPH_GAP = re.compile(r"\n[ \t\f\v]*\n")
# A word ending a sentence: terminal punctuation, then closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]]*$")

# Boundary strength before a word.
_NONE, _SENTENCE, _PARAGRAPH = 0, 1, 2
# Slack for float sums of token estimates.
_EPSILON = 1e-6

TokenCounter = Callable[[str], int]
#: What is embedded before the text of a chunk that starts at a character offset.
Prefix = Callable[[int], str]


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """Token limits: ``count(text) <= max_tokens`` always; windows of about ``size`` tokens."""

    count: TokenCounter
    max_tokens: int
    size: int
    overlap: int | None  # None: the overlap is in words


def spans(
    text: str,
    start: int,
    end: int,
    size: int,
    overlap: int,
    *,
    tokens: TokenLimits | None,
    prefix: Prefix | None = None,
) -> list[tuple[int, int]]:
    """Character spans of the chunks of ``text[start:end]``; with ``tokens``, each
    chunk's ``prefix`` and text together count at most ``tokens.max_tokens``."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    if not words:
        return []
    plan = _Plan(text, words, tokens, prefix)
    found: list[tuple[int, int]] = []
    first, floor = 0, 0
    while True:
        first, last = plan.window(first, floor, size)
        found.append((plan.words[first][0], plan.words[last - 1][1]))
        if last == len(plan.words):
            return found
        if tokens is not None and tokens.overlap is not None:
            wanted = plan.words_back(last, tokens.overlap)
        else:
            wanted = overlap
        first, floor = _next_start(plan.strength, first, last, size, wanted), last


class _Plan:
    """Words of a section, the boundary strength before each, and (token mode) costs."""

    def __init__(
        self, text: str, words: list[tuple[int, int]], tokens: TokenLimits | None, prefix: Prefix | None
    ) -> None:
        self.text = text
        self.words = words
        self.tokens = tokens
        self.embedded_before = prefix
        self._reserved: dict[str, int] = {"": 0}
        self.strength = _boundaries(text, words)
        self.costs: list[float] = []
        self.prefix: list[float] = []
        if tokens is not None:
            self.costs = self._estimate(tokens.count)
            self._sum()

    def _estimate(self, count: TokenCounter) -> list[float]:
        """Tokens per word: each sentence counted once, spread over its words by length."""
        costs: list[float] = []
        cuts = [i for i in range(1, len(self.words)) if self.strength[i] >= _SENTENCE]
        for a, b in zip([0, *cuts], [*cuts, len(self.words)], strict=True):
            total = count(self.text[self.words[a][0] : self.words[b - 1][1]])
            lengths = [end - start for start, end in self.words[a:b]]
            chars = sum(lengths)
            costs.extend(total * n / chars for n in lengths)
        return costs

    def _sum(self) -> None:
        self.prefix = [0.0]
        for cost in self.costs:
            self.prefix.append(self.prefix[-1] + cost)

    def _before(self, first: int) -> str:
        """What is embedded before a chunk starting at word ``first``."""
        before = self.embedded_before
        return before(self.words[first][0]) if before is not None else ""

    def _reserve(self, first: int) -> int:
        """Tokens of what is embedded before a chunk starting at word ``first``."""
        before = self._before(first)
        found = self._reserved.get(before)
        if found is None:
            assert self.tokens is not None
            found = self._reserved[before] = self.tokens.count(before)
        return found

    def _fits(self, first: int, budget: float) -> int:
        """Largest ``last`` with an estimated ``words[first:last]`` within ``budget`` tokens."""
        return bisect.bisect_right(self.prefix, self.prefix[first] + budget + _EPSILON) - 1

    def words_back(self, last: int, overlap: int) -> int:
        """How many words before ``last`` hold about ``overlap`` tokens."""
        if overlap <= 0:
            return 0
        i = bisect.bisect_left(self.prefix, self.prefix[last] - overlap - _EPSILON, 0, last)
        # prefix[i] >= target: words[i:last] fit; one more word may come closer.
        if i > 0 and abs(self.prefix[last] - self.prefix[i - 1] - overlap) < abs(
            self.prefix[last] - self.prefix[i] - overlap
        ):
            i -= 1
        return last - i

    def window(self, first: int, floor: int, size: int) -> tuple[int, int]:
        """``(first, last)`` of the next chunk; it reaches past word ``floor``.

        ``first`` moves forward when the overlap it asks for leaves no room.
        """
        n = len(self.words)
        while True:
            limit = min(first + size, n)
            if self.tokens is not None:
                room = min(self.tokens.size, self.tokens.max_tokens - self._reserve(first))
                limit = max(first + 1, min(limit, self._fits(first, room)))
            if limit <= floor:
                first += 1
                continue
            last = limit if limit == n else self._cut(first, floor, limit)
            if self.tokens is None:
                return first, last
            shrunk = self._shrink(first, floor, last)
            if shrunk is not None:
                return first, shrunk
            if first < floor:
                first += 1  # give up some overlap to make room
                continue
            # Even word ``first`` alone is too long for the model: cut it into pieces.
            if not self._split_word(first):
                logger.warning("a single character counts more than %d tokens", self.tokens.max_tokens)
                return first, first + 1

    def _cut(self, first: int, floor: int, limit: int) -> int:
        lowest = max(floor + 1, first + max(1, (limit - first) // 2))
        return _cut(self.strength, lowest, limit)

    def _shrink(self, first: int, floor: int, last: int) -> int | None:
        """``last``, or an earlier end past ``floor``, whose chunk fits ``max_tokens``; else None."""
        assert self.tokens is not None
        count, most = self.tokens.count, self.tokens.max_tokens
        before = self._before(first)
        while True:
            tokens = count(before + self.text[self.words[first][0] : self.words[last - 1][1]])
            if tokens <= most:
                return last
            if last - 1 <= max(floor, first):
                return None
            drop = max(1, math.ceil((last - first) * (tokens - most) / tokens))
            limit = max(floor + 1, first + 1, last - drop)
            last = self._cut(first, floor, limit)

    def _split_word(self, index: int) -> bool:
        """Cut word ``index`` into pieces that each fit ``max_tokens`` (with their prefix);
        False if it already fits, or cannot be cut any finer."""
        assert self.tokens is not None
        count = self.tokens.count
        most = max(1, self.tokens.max_tokens - self._reserve(index))
        start, end = self.words[index]
        if end - start <= 1 or count(self._before(index) + self.text[start:end]) <= self.tokens.max_tokens:
            return False
        pieces: list[tuple[int, int]] = []
        costs: list[float] = []
        while start < end:
            stop = longest_prefix(self.text, start, end, count, most)
            pieces.append((start, stop))
            costs.append(float(count(self.text[start:stop])))
            start = stop
        if len(pieces) == 1:
            return False
        logger.debug("cut a word of %d characters into %d pieces", end - self.words[index][0], len(pieces))
        self.words[index : index + 1] = pieces
        self.costs[index : index + 1] = costs
        self.strength[index + 1 : index + 1] = [_NONE] * (len(pieces) - 1)
        self._sum()
        return True


def longest_prefix(text: str, start: int, end: int, count: TokenCounter, most: int) -> int:
    """Largest ``stop`` in ``(start, end]`` with ``count(text[start:stop]) <= most``; at least ``start + 1``.

    The range is found by doubling first, so no call counts much more text than fits.
    """
    low, step = start + 1, max(1, most)
    high = min(end, start + step)
    while high < end and count(text[start:high]) <= most:
        low, step = high, step * 2
        high = min(end, start + step)
    # text[start:low] fits (or is one character); the answer is in [low, high].
    while low < high:
        mid = (low + high + 1) // 2
        if count(text[start:mid]) <= most:
            low = mid
        else:
            high = mid - 1
    return low


def _boundaries(text: str, words: list[tuple[int, int]]) -> list[int]:
    """``strength[i]``: how good a place to cut right before word ``i`` is."""
    strength = [_NONE] * (len(words) + 1)
    for i in range(1, len(words)):
        gap = text[words[i - 1][1] : words[i][0]]
        if _PARAGRAPH_GAP.search(gap):
            strength[i] = _PARAGRAPH
        elif _SENTENCE_END.search(text[words[i - 1][0] : words[i - 1][1]]):
            strength[i] = _SENTENCE
    strength[len(words)] = _PARAGRAPH
    return strength


def _cut(strength: list[int], lowest: int, limit: int) -> int:
    """The last paragraph, else sentence, boundary in ``[lowest, limit]``, else ``limit``."""
    for wanted in (_PARAGRAPH, _SENTENCE):
        for i in range(limit, lowest - 1, -1):
            if strength[i] >= wanted:
                return i
    return limit


def _next_start(strength: list[int], first: int, last: int, size: int, overlap: int) -> int:
    """Start of the chunk after ``words[first:last]``: about ``overlap`` words back."""
    if overlap == 0:
        return last
    # Prefer a sentence start whose overlap is within half of the target either way,
    # but always move forward and keep the next chunk reaching past ``last``.
    low = max(first + 1, last - min(overlap + overlap // 2, size - 1))
    high = min(last - 1, last - max(1, overlap - overlap // 2))
    candidates = [i for i in range(low, high + 1) if strength[i] >= _SENTENCE]
    if candidates:
        return min(candidates, key=lambda i: (abs(last - i - overlap), i))
    return max(first + 1, last - overlap)
