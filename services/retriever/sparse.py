"""BM25 as sparse vectors: term frequencies for chunks, unit weights for questions.

A chunk's vector holds, for each of its terms, BM25's term-frequency part::

    tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avgdl))

with ``avgdl`` a fixed setting (as fastembed's ``Bm25`` does), and a question's
vector holds 1.0 per distinct term. The IDF half of BM25 is Qdrant's: the
collection's sparse vector is created with ``Modifier.IDF``, so the engine
multiplies each query term by ``ln((N - n + 0.5) / (n + 0.5) + 1)`` over the
points it holds, and the dot product of the two vectors is the chunk's BM25 score.

Terms: the text lower-cased, cut into words of letters and digits, English
stopwords and over-long words dropped, each word stemmed (Snowball English), and
each stem mapped to a sparse index by a stable hash (blake2b, 32 bits): the same
text gives the same vector in every process and on every machine.

Tokenisers (``tokenizer``): "words" is the above. "technical" adds, to those
words, each technical token whole: a run of words joined by ``_ . : -`` or led by
dashes (``null_terminated``, ``--posix``, ``5.2.15``, ``read-only``), lower-cased
and not stemmed, so a question naming an identifier or an option matches it exactly
as well as by its parts. "qdrant" is qdrant-edge's ``Bm25`` model (the Qdrant
server's BM25 inference: its word tokenizer, English stopwords and Snowball
stemmer, its own term ids), with the same ``k1``/``b``/``avgdl``.

Changing the tokenisation or ``k1``/``b``/``avgdl`` changes the vectors of new
chunks only: a collection indexed before must be indexed again to match.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import Stemmer

# Words of letters and digits (any script); underscores and punctuation separate them.
_WORD = re.compile(r"[^\W_]+")
# Technical tokens: words joined by _ . : - (or led by one or two dashes, an option).
_TECHNICAL = re.compile(r"(?:(?<![\w.:-])-{1,2}(?=[^\W_]))?[^\W_]+(?:[_.:-]+[^\W_]+)*")
TOKENIZERS = ("words", "technical", "qdrant")
# Longer "words" are hashes, base64 or glued tables: noise to BM25 (fastembed's limit too).
MAX_TOKEN_CHARS = 40

# NLTK's English stopword list (the one fastembed's Bm25 uses).
_STOPWORDS = """
    a about above after again against ain all am an and any are aren aren't as at be because been
    before being below between both but by can couldn couldn't d did didn didn't do does doesn
    doesn't doing don don't down during each few for from further had hadn hadn't has hasn hasn't
    have haven haven't having he her here hers herself him himself his how i if in into is isn
    isn't it it's its itself just ll m ma me mightn mightn't more most mustn mustn't my myself
    needn needn't no nor not now o of off on once only or other our ours ourselves out over own re
    s same shan shan't she she's should should've shouldn shouldn't so some such t than that
    that'll the their theirs them themselves then there these they this those through to too under
    until up ve very was wasn wasn't we were weren weren't what when where which while who whom why
    will with won won't wouldn wouldn't y you you'd you'll you're you've your yours yourself
    yourselves
"""
STOPWORDS = frozenset(_STOPWORDS.split())

_STEMMER = Stemmer.Stemmer("english")


@dataclass(frozen=True)
class SparseVector:
    """Sorted, distinct ``indices`` (32-bit unsigned) and their ``values``."""

    indices: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.indices)


@lru_cache(maxsize=200_000)
def _term(word: str) -> int | None:
    """The sparse index of a lower-cased word, None for a word BM25 ignores."""
    if word in STOPWORDS or len(word) > MAX_TOKEN_CHARS:
        return None
    return term_index(_STEMMER.stemWord(word))


def term_index(term: str) -> int:
    """A term's sparse index: 32 bits of its blake2b hash, the same in every process."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


def terms(text: str, *, technical: bool = False) -> list[int]:
    """The sparse indices of ``text``'s words, in order, repeats kept; with ``technical``,
    each technical token (see the module docstring) whole after its words."""
    lowered = text.lower()
    if not technical:
        found = (_term(word) for word in _WORD.findall(lowered))
        return [index for index in found if index is not None]
    out: list[int] = []
    for token in _TECHNICAL.findall(lowered):
        words = _WORD.findall(token)
        out += [index for index in map(_term, words) if index is not None]
        if token != words[0] and len(token) <= MAX_TOKEN_CHARS:
            out.append(term_index(token))
    return out


class Bm25:
    """Sparse vectors for BM25 with Qdrant's IDF modifier; see the module docstring."""

    def __init__(
        self, k1: float = 1.2, b: float = 0.75, avgdl: float = 256.0, tokenizer: str = "words"
    ) -> None:
        if k1 < 0:
            raise ValueError(f"k1 must not be negative, got {k1}")
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be within [0, 1], got {b}")
        if avgdl <= 0:
            raise ValueError(f"avgdl must be positive, got {avgdl}")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
        self.k1, self.b, self.avgdl, self.tokenizer = k1, b, avgdl, tokenizer
        self._qdrant: Any = None
        if tokenizer == "qdrant":
            from qdrant_edge import Bm25 as EdgeBm25
            from qdrant_edge import Bm25Config

            self._qdrant = EdgeBm25(Bm25Config(k=k1, b=b, avg_len=avgdl, language="english"))

    def terms(self, text: str) -> list[int]:
        """The sparse indices of ``text``'s terms with this tokenizer (not for "qdrant")."""
        return terms(text, technical=self.tokenizer == "technical")

    def document(self, text: str) -> SparseVector:
        """A chunk's vector: BM25's term-frequency weight of each of its terms."""
        if self._qdrant is not None:
            return _from_qdrant(self._qdrant.embed_document(text))
        return self.weights(self.terms(text))

    def weights(self, found: Sequence[int]) -> SparseVector:
        """The vector of a chunk whose terms (:meth:`terms`, repeats kept) are ``found``."""
        if not found:
            return SparseVector()
        norm = self.k1 * (1.0 - self.b + self.b * len(found) / self.avgdl)
        counts = sorted(Counter(found).items())
        return SparseVector(
            tuple(index for index, _ in counts),
            tuple(tf * (self.k1 + 1.0) / (tf + norm) for _, tf in counts),
        )

    def query(self, text: str) -> SparseVector:
        """A question's vector: weight 1 for each distinct term."""
        if self._qdrant is not None:
            return _from_qdrant(self._qdrant.embed_query(text))
        indices = tuple(sorted(set(self.terms(text))))
        return SparseVector(indices, (1.0,) * len(indices))


def _from_qdrant(vector: Any) -> SparseVector:
    """qdrant-edge's sparse vector as ours: indices sorted, with their values."""
    pairs = sorted(zip(vector.indices, vector.values, strict=True))
    return SparseVector(tuple(int(i) for i, _ in pairs), tuple(float(v) for _, v in pairs))
