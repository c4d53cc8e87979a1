"""An answerer without a language model: it quotes the sentences that answer the question.

Used when no LLM key is configured. Each quoted sentence ends with the number of its
source, ``"Refunds take 14 days [2]."``; sources are the hits scoring at least
``min_score``, numbered from 1 in the order given.

A sentence's score is its weighted share of the question's content words (words few
retrieved sentences share weigh more) plus a little of its hit's evidence score, plus,
when the answerer has word vectors (:mod:`.word_vectors`), a little of its closeness in
meaning to the question: a sentence answering in other words ("the value is specified in
milliseconds" for "in what unit") rises above one that only repeats the question's
words. ``SEMANTIC_WEIGHT`` was chosen by leave-one-out cross-validation on the pdf-qa
questions (``bench/semantic_cv.py``: 39 of 40 folds chose 0.2, one 0.3; held out, 25 of
36 answerable questions right, against 21 without the word vectors). A
number, for a "how long / how many / what default" question, and a negation, for a
"which do not" question, count as one more word of the question found; a negation
counts a little more in answer to a yes/no question (see :mod:`.evidence`). Quotes are
whole sentences, cleaned for reading (:mod:`.sentences`), and lines repeated on several
retrieved pages of a document (running headers and footers) are never part of one
(:mod:`.quotes`). Each citation's ``char_start``/``char_end`` span the quoted sentences
in the page's text.

It abstains, with no citations, when the evidence is weak: ``Evidence.score`` (the best
passage's coverage of the question and the best hit's evidence score) below
``min_evidence`` (see :mod:`.evidence` for how the threshold was chosen).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from libs.common.models import Citation, Hit
from services.generator.backends import Answer, OnToken, emit_pieces
from services.generator.evidence import NEGATION_TERM, Cues, Evidence, relevance, sentence_cues
from services.generator.prompt import NOTHING_RELEVANT, citation, number_sources, relevant_hits
from services.generator.quotes import repeated_lines, sentences_of, vocabulary, with_citation
from services.generator.sentences import Sentence
from services.generator.text import content_terms, content_words, words
from services.generator.word_vectors import Similarity

logger = logging.getLogger(__name__)

MODE = "extractive"
# A sentence's score: this much of its (weighted) share of the question's content words...
LEXICAL_WEIGHT = 0.7
# ...plus this much of its hit's evidence score.
RETRIEVAL_WEIGHT = 0.3
# ...plus this much of its closeness in meaning to the question (word vectors), when the
# answerer has them (the module docstring says how it was chosen).
SEMANTIC_WEIGHT = 0.2
# Sentences adding fewer new content words than this (headings, echoes of the question)
# count half.
MIN_NEW_TERMS = 2
# A sentence with a negation counts this much more in answer to a yes/no question.
YES_NO_BONUS = 0.25
# A sentence scoring below this share of the best one is not quoted.
RELATIVE_CUTOFF = 0.5
SENTENCE_MAX_CHARS = 300
# Two long words sharing this many first letters count as one word of the question.
NEAR_PREFIX = 8
# A sentence leaning back brings its list entry's first sentence (the term) from at most
# this many sentences before it.
ENTRY_REACH = 4


# A sentence that leans on the one before it: it opens with a pronoun or a connective, or
# names its subject as "this/these/such <thing>".
_REFERS_BACK = re.compile(
    r"^\W*(?:it|its|they|their|them|this|these|those|such|here|for example|for instance|e\.g\."
    r"|in particular|in this case|in that case|however|thus|therefore|hence|otherwise|also|then)\b"
    r"|\b(?:this|these|such)\s+[^\W\d_]+",
    re.IGNORECASE,
)
# Identifiers made of words: camelCase, PascalCase, snake_case.
_IDENTIFIER = re.compile(r"\b[^\W\d_]*[a-z][A-Z]\w*|\b\w+_\w+")
_CAMEL = re.compile(r"[a-z][A-Z]")
_IDENTIFIER_PART = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


@dataclass(frozen=True)
class _Candidate:
    n: int
    position: int
    sentence: Sentence
    terms: frozenset[str]
    hit_score: float

    @property
    def text(self) -> str:
        return self.sentence.quote


@dataclass(frozen=True)
class _Scored:
    score: float
    candidate: _Candidate


@dataclass(frozen=True)
class Draft:
    """The sentences an answer would quote, and how well the evidence supports it."""

    evidence: list[Hit]
    chosen: list[_Candidate]
    support: Evidence


class ExtractiveAnswerer:
    """Builds an answer from the retrieved sentences that answer the question."""

    mode = MODE

    def __init__(
        self,
        min_score: float,
        max_sentences: int,
        per_source: int = 2,
        min_evidence: float = 0.0,
        *,
        similarity: Similarity | None = None,
        semantic_weight: float = SEMANTIC_WEIGHT,
    ) -> None:
        if max_sentences < 1 or per_source < 1:
            raise ValueError("max_sentences and per_source must be at least 1")
        self.min_score = min_score
        self.max_sentences = max_sentences
        self.per_source = per_source
        self.min_evidence = min_evidence
        self.similarity = similarity
        self.semantic_weight = semantic_weight

    async def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        *,
        on_token: OnToken | None = None,
        deadline: float,
    ) -> Answer:
        """The answer, also sent to ``on_token`` a word at a time; ``deadline`` is not
        needed (the work takes milliseconds)."""
        # Off the event loop: scoring sentences is CPU work.
        result = await asyncio.to_thread(self.compose, question, hits)
        await emit_pieces(result.answer, on_token)
        return result

    def compose(self, question: str, hits: Sequence[Hit]) -> Answer:
        """The whole answer at once."""
        draft = self.draft(question, hits)
        if draft is None:
            return _abstain()
        if draft.support.score < self.min_evidence:
            logger.info(
                "weak evidence: score %.3f (coverage %.3f, relevance %.3f) below min_evidence %.3f",
                draft.support.score,
                draft.support.coverage,
                draft.support.relevance,
                self.min_evidence,
            )
            return _abstain()

        # Sources in order of their best quoted sentence; each source's sentences in reading order.
        groups: dict[int, list[_Candidate]] = {}
        for candidate in draft.chosen:
            groups.setdefault(candidate.n, []).append(candidate)
        parts: list[str] = []
        citations: list[Citation] = []
        for n, group in groups.items():
            group.sort(key=lambda c: c.position)
            parts.extend(with_citation(text, n) for text in _passages(group))
            snippet = " ".join(c.text for c in group)
            span = (group[0].sentence.start, group[-1].sentence.end)
            citations.append(citation(n, draft.evidence[n - 1], snippet, span=span))
        citations.sort(key=lambda c: c.n)
        return Answer(answer=" ".join(parts), citations=citations, mode=MODE)

    def draft(self, question: str, hits: Sequence[Hit]) -> Draft | None:
        """The sentences to quote and the evidence's support, before the threshold; None
        when nothing can be quoted at all."""
        evidence = relevant_hits(hits, self.min_score)
        wanted = frozenset(content_terms(question))
        if not evidence or not wanted:
            logger.info(
                "nothing relevant: %d of %d hits reach min_score %.3f, %d content words in question",
                len(evidence),
                len(hits),
                self.min_score,
                len(wanted),
            )
            return None
        cues = Cues.of(question)
        skip, known = repeated_lines(evidence), vocabulary(evidence)
        near = _near_forms(wanted)
        candidates = [
            _Candidate(n, position, sentence, _with_near(_terms(sentence.quote), near), relevance(hit))
            for n, hit in number_sources(evidence)
            for position, sentence in enumerate(sentences_of(hit.text, skip, SENTENCE_MAX_CHARS, known))
        ]
        weight = _weights(candidates, wanted | cues.terms())
        scored = _score(candidates, weight, cues)
        if self.similarity is not None and self.semantic_weight:
            scored = _with_closeness(scored, self.similarity, question, self.semantic_weight)
        chosen = self._select(scored)
        if not chosen:
            logger.info("nothing relevant: no sentence of %d hits shares a content word", len(evidence))
            return None
        support = Evidence(
            relevance=max(relevance(hit) for hit in evidence),
            coverage=_coverage(chosen[0], candidates, {t: w for t, w in weight.items() if t in wanted}),
        )
        return Draft(evidence, _with_context(chosen, candidates), support)

    def _select(self, scored: Sequence[_Scored]) -> list[_Candidate]:
        """The best sentences: no repeats (chunks overlap), at most ``per_source`` each."""
        chosen: list[_Candidate] = []
        seen: set[tuple[str, ...]] = set()
        per_source: Counter[int] = Counter()
        best = scored[0].score if scored else 0.0
        cutoff = RELATIVE_CUTOFF * best if best > 0 else -math.inf
        for item in scored:
            if len(chosen) >= self.max_sentences or item.score < cutoff:
                break
            candidate = item.candidate
            key = tuple(words(candidate.text))
            if key in seen or per_source[candidate.n] >= self.per_source:
                continue
            seen.add(key)
            per_source[candidate.n] += 1
            chosen.append(candidate)
        return chosen


def _abstain() -> Answer:
    return Answer(answer=NOTHING_RELEVANT, citations=[], mode=MODE, abstained=True)


def _weights(candidates: Sequence[_Candidate], wanted: frozenset[str]) -> dict[str, float]:
    """Each question word's weight: words found in few candidate sentences weigh more
    (inverse document frequency over the candidates), so a word every chunk repeats decides
    little, and a word found in none weighs most."""
    total = len(candidates)
    frequency = Counter(term for c in candidates for term in c.terms & wanted)
    return {term: 1.0 + math.log((total + 1) / (frequency[term] + 1)) for term in wanted}


def _near_forms(wanted: frozenset[str]) -> dict[str, str]:
    """The question's long words by their first ``NEAR_PREFIX`` letters."""
    return {term[:NEAR_PREFIX]: term for term in wanted if len(term) >= NEAR_PREFIX}


def _with_near(terms: frozenset[str], near: dict[str, str]) -> frozenset[str]:
    """``terms`` plus each question word one of them shares its first ``NEAR_PREFIX``
    letters with: another form the stemmer does not reduce ("preprocessor",
    "preprocessing") or a misspelling ("exponentiaion")."""
    if not near:
        return terms
    found = {near[t[:NEAR_PREFIX]] for t in terms if len(t) >= NEAR_PREFIX and t[:NEAR_PREFIX] in near}
    return terms | found if found else terms


# Overlapping chunks, and chunks retrieved again for the next question, repeat sentences.
@lru_cache(maxsize=1 << 14)
def _terms(sentence: str) -> frozenset[str]:
    """A sentence's content words, those inside identifiers too ("splitByRow": split, row),
    and its cues (a number, a negation)."""
    tokens = words(sentence)
    terms = frozenset(content_words(tokens)) | sentence_cues(sentence, tokens)
    # Both kinds of identifier need one of these: a cheap test first.
    if ("_" in sentence or _CAMEL.search(sentence)) and (identifiers := _IDENTIFIER.findall(sentence)):
        terms |= frozenset(content_terms(" ".join(_IDENTIFIER_PART.findall(" ".join(identifiers)))))
    return terms


def _with_context(chosen: Sequence[_Candidate], candidates: Sequence[_Candidate]) -> list[_Candidate]:
    """``chosen`` with what each sentence needs to be read whole: the piece before it when
    it leans on that one ("This variable ...", "For example, ...") or continues it (a long
    sentence cut for length), the first sentence of its entry in a definition or option
    list when it leans back ("SRANDOM This variable expands ..." for "assignments to this
    variable have no effect"), and the piece after it when it goes on there."""
    by_place = {(c.n, c.position): c for c in candidates}
    by_start = {(c.n, c.sentence.start): c for c in candidates}
    out: list[_Candidate] = []
    taken = {(c.n, c.position) for c in chosen}

    def add(place: tuple[int, int]) -> None:
        extra = by_place.get(place)
        if extra is not None and place not in taken:
            out.append(extra)
            taken.add(place)

    for c in chosen:
        leans_back = bool(_REFERS_BACK.search(c.text))
        head = None if c.sentence.entry is None else by_start.get((c.n, c.sentence.entry))
        if leans_back and head is not None and 1 < c.position - head.position <= ENTRY_REACH:
            add((c.n, head.position))
        before = by_place.get((c.n, c.position - 1))
        if before is not None and (before.sentence.cut or leans_back):
            add((c.n, c.position - 1))
        out.append(c)
        if c.sentence.cut:
            add((c.n, c.position + 1))
    return out


def _passages(group: Sequence[_Candidate]) -> list[str]:
    """A source's quoted sentences in reading order, the pieces of one cut sentence joined."""
    texts: list[str] = []
    previous: _Candidate | None = None
    for c in group:
        if previous is not None and previous.sentence.cut and c.position == previous.position + 1:
            texts[-1] = f"{texts[-1]} {c.text}"
        else:
            texts.append(c.text)
        previous = c
    return texts


def _score(candidates: Sequence[_Candidate], weight: dict[str, float], cues: Cues) -> list[_Scored]:
    """Sentences sharing a content word with the question, best first."""
    wanted = weight.keys()
    weight_sum = sum(weight.values())
    scored = []
    for c in candidates:
        matched = c.terms & wanted
        if not matched or matched <= cues.terms():
            continue
        lexical = sum(weight[term] for term in matched) / weight_sum
        if len(c.terms - wanted) < MIN_NEW_TERMS:
            lexical *= 0.5
        if cues.yes_no and NEGATION_TERM in c.terms:
            lexical *= 1.0 + YES_NO_BONUS
        score = LEXICAL_WEIGHT * lexical + RETRIEVAL_WEIGHT * c.hit_score
        scored.append(_Scored(score, c))
    scored.sort(key=lambda s: (-s.score, s.candidate.n, s.candidate.position))
    return scored


def _with_closeness(
    scored: Sequence[_Scored], similarity: Similarity, question: str, weight: float
) -> list[_Scored]:
    """``scored`` with ``weight`` times each sentence's closeness in meaning to the
    question added, best first."""
    closeness = similarity.closeness(question, [s.candidate.text for s in scored])
    rescored = [_Scored(s.score + weight * c, s.candidate) for s, c in zip(scored, closeness, strict=True)]
    rescored.sort(key=lambda s: (-s.score, s.candidate.n, s.candidate.position))
    return rescored


def _coverage(best: _Candidate, candidates: Sequence[_Candidate], weight: dict[str, float]) -> float:
    """The weighted share of the question's words in ``best`` and the sentences either side."""
    near = {
        term
        for c in candidates
        if c.n == best.n and abs(c.position - best.position) <= 1
        for term in c.terms & weight.keys()
    }
    return sum(weight[t] for t in near) / sum(weight.values())
