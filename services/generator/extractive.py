"""An answerer without a language model: it quotes the most relevant sentences.

Used when no LLM key is configured. Each quoted sentence ends with the number of its
source, ``"Refunds take 14 days [2]."``; sources are the hits scoring at least
``min_score``, numbered from 1 in the order given.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from libs.common.models import Citation, Hit
from services.generator.backends import Answer, OnToken, emit_pieces
from services.generator.prompt import NOTHING_RELEVANT, citation, number_sources, relevant_hits
from services.generator.text import content_terms, split_sentences, words

logger = logging.getLogger(__name__)

MODE = "extractive"
# A sentence's score: this much of its (weighted) share of the question's content words...
LEXICAL_WEIGHT = 0.7
# ...plus this much of its chunk's retrieval score.
RETRIEVAL_WEIGHT = 0.3
# Sentences adding fewer new content words than this (headings, echoes of the question)
# count half.
MIN_NEW_TERMS = 2
# A sentence scoring below this share of the best one is not quoted.
RELATIVE_CUTOFF = 0.5
SENTENCE_MAX_CHARS = 300

_END = re.compile(r"^(.*?)([.!?]+)$", re.DOTALL)


@dataclass(frozen=True)
class _Candidate:
    n: int
    position: int
    text: str
    terms: frozenset[str]
    hit_score: float


@dataclass(frozen=True)
class _Scored:
    score: float
    candidate: _Candidate


def _with_citation(sentence: str, n: int) -> str:
    """``"Text." -> "Text [n]."``; without end punctuation ``"Text [n]"``."""
    match = _END.match(sentence)
    if match:
        return f"{match.group(1).rstrip()} [{n}]{match.group(2)}"
    return f"{sentence} [{n}]"


class ExtractiveAnswerer:
    """Builds an answer from the retrieved sentences closest to the question."""

    mode = MODE

    def __init__(self, min_score: float, max_sentences: int, per_source: int = 2) -> None:
        if max_sentences < 1 or per_source < 1:
            raise ValueError("max_sentences and per_source must be at least 1")
        self.min_score = min_score
        self.max_sentences = max_sentences
        self.per_source = per_source

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
            return Answer(answer=NOTHING_RELEVANT, citations=[], mode=MODE, abstained=True)

        candidates = [
            _Candidate(n, position, sentence, frozenset(content_terms(sentence)), hit.score)
            for n, hit in number_sources(evidence)
            for position, sentence in enumerate(split_sentences(hit.text, SENTENCE_MAX_CHARS))
        ]
        chosen = self._select(self._score(candidates, wanted))
        if not chosen:
            logger.info("nothing relevant: no sentence of %d hits shares a content word", len(evidence))
            return Answer(answer=NOTHING_RELEVANT, citations=[], mode=MODE, abstained=True)

        # Sources in order of their best quoted sentence; each source's sentences in reading order.
        groups: dict[int, list[_Candidate]] = {}
        for candidate in chosen:
            groups.setdefault(candidate.n, []).append(candidate)
        parts: list[str] = []
        citations: list[Citation] = []
        for n, group in groups.items():
            group.sort(key=lambda c: c.position)
            parts.extend(_with_citation(c.text, n) for c in group)
            snippet = " ".join(c.text for c in group)
            citations.append(citation(n, evidence[n - 1], snippet, [c.text for c in group]))
        citations.sort(key=lambda c: c.n)
        return Answer(answer=" ".join(parts), citations=citations, mode=MODE)

    @staticmethod
    def _score(candidates: Sequence[_Candidate], wanted: frozenset[str]) -> list[_Scored]:
        """Sentences sharing a content word with the question, best first.

        Question words found in few sentences weigh more (inverse document frequency
        over the candidate sentences), so a word every chunk repeats decides little.
        """
        total = len(candidates)
        frequency = Counter(term for c in candidates for term in c.terms & wanted)
        weight = {term: 1.0 + math.log((total + 1) / (frequency[term] + 1)) for term in wanted}
        weight_sum = sum(weight.values())
        scored = []
        for c in candidates:
            matched = c.terms & wanted
            if not matched:
                continue
            lexical = sum(weight[term] for term in matched) / weight_sum
            if len(c.terms - wanted) < MIN_NEW_TERMS:
                lexical *= 0.5
            score = LEXICAL_WEIGHT * lexical + RETRIEVAL_WEIGHT * c.hit_score
            scored.append(_Scored(score, c))
        scored.sort(key=lambda s: (-s.score, s.candidate.n, s.candidate.position))
        return scored

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
