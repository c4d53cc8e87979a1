"""What a question asks for, and how well the retrieved text supports an answer.

Cues of the question (:class:`Cues`) steer which sentences the extractive answerer
quotes: a question asking "how long", "how many" or for a default or limit wants a
sentence with a number in it, and a question with a negation ("which do not ...", "what
is not required") one that says what is not, cannot or only is: each counts as one more
word of the question to find (``NUMBER_TERM``, ``NEGATION_TERM``). A yes/no question
("Can I ...?") is often answered by a restriction: a sentence with a negation counts a
little more.

:class:`Evidence` is the support for an answer, from two general features:

- ``relevance``: the best evidence hit's evidence score (``Hit.relevance``, the
  retriever's calibrated estimate from the fused dense + BM25 ranking; the dense cosine
  ``Hit.score`` from a retriever that predates it);
- ``coverage``: the weighted share of the question's content words that the quoted
  passage (the best sentence and the sentences either side of it) contains. A word that
  is in none of the retrieved sentences weighs most: a question about something the
  documents never mention leaves its own rarest words uncovered.

``Evidence.score`` is ``COVERAGE_WEIGHT * coverage + (1 - COVERAGE_WEIGHT) * relevance``;
the answerers abstain ("I could not find ...", no citations) below
``GeneratorSettings.min_evidence``.

How ``COVERAGE_WEIGHT`` (0, 0.25, 0.5, 0.75 or 1) and the threshold were chosen
(``bench/abstention_cv.py``, on the 40 questions of ``../shared/data/pdf-qa/dev.jsonl``,
36 answerable, 4 not, answered in process as the stack answers them): each held-out
question is decided by the pair best on the other 39, best meaning the highest
answerable-right rate plus unanswerable-abstained rate among pairs that abstain on at
most 10% of the answerable questions (ties: the weight nearest 0.5, the median
threshold). With the word vectors in the answerer (``extractive.SEMANTIC_WEIGHT``),
every fold chose weight 0.5 and thresholds 0.387 to 0.397 (median 0.394): held out, 25
of 36 answerable right with 4 wrong abstentions, and 1 of 4 unanswerable abstained
(stratified 4-fold x 10: answerable right 0.68 +- 0.15, wrong abstentions 0.13 +- 0.09,
unanswerable abstained 0.20 +- 0.40); on all 40 at 0.394, 25 right, 3 wrong
abstentions, 2 of 4 unanswerable abstained. Few answerable questions answered right
score below 0.43, but two of the unanswerable ones score 0.47: they are plausible
questions about topics the manuals do cover, whose best passages cover as much of the
question and whose hits score as high as answerable ones', so no threshold on these two
features separates them without abstaining on answerable questions (nor does the best
quoted sentence's closeness in word vectors: the four unanswerable score 0.47 to 0.71,
amid the answerable ones). (Earlier choices: 0.397 at 9214ae9, before the word
vectors; 0.40 at e682122; 0.47 with weight 0.25 when relevance was the cosine.)
``DEFAULT_MIN_EVIDENCE`` is the median of the folds' choices; re-run the choice when
retrieval or the answerer changes.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from libs.common.models import Hit
from services.generator.text import words

# "how long / how many / how much ...", or a question about a default, a limit or a size.
_QUANTITY = re.compile(
    r"\bhow (?:long|many|much|big|large|small|strong|often|far|old|wide|high|deep|fast|soon)\b"
    r"|\b(?:default|maximum|minimum|max|min|limit|ceiling|size|length|number of|count|timeout|delay)\b",
    re.IGNORECASE,
)
_NEGATION_WORDS = frozenset(
    [
        "not",
        "no",
        "never",
        "cannot",
        "none",
        "nor",
        "neither",
        "without",
        "except",
        "only",
        "unsupported",
        "ignore",
        "ignored",
        "ignores",
    ]
)
# "don't", "isn't": a word ending so (``text.words`` keeps the apostrophe).
_CONTRACTED_NOT = re.compile(r"n['\u2019]t\b", re.IGNORECASE)
_YES_NO = re.compile(r"^\W*(?:can|could|does|do|is|are|will|may|should|must|did|has|have)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_NUMBER_WORDS = frozenset(
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "fifteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "hundred",
        "thousand",
        "million",
        "once",
        "twice",
        "half",
        "double",
    ]
)

# Evidence.score's weight on coverage (the rest on relevance): see the module docstring.
COVERAGE_WEIGHT: Final = 0.5
# The threshold chosen by cross-validation (module docstring); the setting's default.
DEFAULT_MIN_EVIDENCE: Final = 0.394


# Stand-ins for "a number" and "a negation" among a question's and a sentence's words: a
# question that wants one counts it as one more word to find, weighted like the rest (by
# how few retrieved sentences have it).
NUMBER_TERM: Final = "<number>"
NEGATION_TERM: Final = "<not>"


@dataclass(frozen=True)
class Cues:
    """What kind of sentence answers the question."""

    # A number (with its unit) is the answer: "how long", "how many", "what default".
    quantity: bool = False
    # The question says "not", "only", "cannot"...: the answer says it too.
    negation: bool = False
    # A yes/no question ("Can I ...?"): the answer often states a restriction.
    yes_no: bool = False

    @classmethod
    def of(cls, question: str) -> Cues:
        return cls(
            quantity=bool(_QUANTITY.search(question)),
            negation=has_negation(question),
            yes_no=bool(_YES_NO.search(question)),
        )

    def terms(self) -> frozenset[str]:
        """The stand-in words the question wants found."""
        return frozenset(
            term for term, wanted in ((NUMBER_TERM, self.quantity), (NEGATION_TERM, self.negation)) if wanted
        )


def sentence_cues(text: str, tokens: Collection[str] | None = None) -> frozenset[str]:
    """The stand-in words a sentence has: a number, a negation. ``tokens``: its
    ``text.words`` when already cut."""
    tokens = words(text) if tokens is None else tokens
    found = ((NUMBER_TERM, has_number(text, tokens)), (NEGATION_TERM, has_negation(text, tokens)))
    return frozenset(term for term, present in found if present)


def has_number(text: str, tokens: Collection[str] | None = None) -> bool:
    """A digit, or a number in words ("twice", "fifteen")."""
    if _DIGIT.search(text):
        return True
    return not _NUMBER_WORDS.isdisjoint(words(text) if tokens is None else tokens)


def has_negation(text: str, tokens: Collection[str] | None = None) -> bool:
    """ "not", "never", "only", "cannot", "without", "ignored", "don't"..."""
    if _CONTRACTED_NOT.search(text):
        return True
    return not _NEGATION_WORDS.isdisjoint(words(text) if tokens is None else tokens)


def relevance(hit: Hit) -> float:
    """The hit's evidence score: ``relevance`` when the retriever gave one, else its cosine."""
    return hit.score if hit.relevance is None else hit.relevance


@dataclass(frozen=True)
class Evidence:
    """How well the retrieved text supports an answer (module docstring)."""

    relevance: float
    coverage: float

    @property
    def score(self) -> float:
        return COVERAGE_WEIGHT * self.coverage + (1.0 - COVERAGE_WEIGHT) * self.relevance
