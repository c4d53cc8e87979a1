"""A follow-up question rewritten as a standalone one, before retrieval.

A chat job whose payload carries ``history`` (earlier turns ``{"role", "content"}``,
oldest first) takes the route ``CHAT_WITH_HISTORY_ROUTE``: generator, embedder,
retriever, generator. Its first generator step lands here. The payload goes on
with ``question`` and ``query`` replaced by the standalone question (the embedder
embeds ``query``, the last step answers ``question``), ``condensed: true`` (so it
is never condensed twice) and ``original_question`` kept; the answer's result then
names the ``standalone_question`` it answered.

With an LLM the model rewrites the question (one short, non-streamed request under
the job's deadline). Without one, a deterministic heuristic: a follow-up that refers
back (a pronoun such as "it", "what about ...", or too few content words of its
own) gets the content words of the earlier user questions it leans on put in
front of it: "when does it leave?" after "Tell me about the ferry to Elmsworth"
becomes "ferry Elmsworth: when does it leave?". A question that stands on its own
is kept as it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from libs.common.envelope import Envelope
from libs.common.stage import Output
from services.generator.backends import Answerer, ChatLLM
from services.generator.llm import LLMAnswerer, aclose
from services.generator.sentences import normalize_space
from services.generator.text import clip, content_terms, words

logger = logging.getLogger(__name__)

# Words that point back at something said before.
REFERRING: Final = frozenset(
    {
        *("it", "its", "itself", "they", "them", "their", "theirs", "these", "those", "this"),
        *("he", "him", "his", "she", "her", "hers", "same", "former", "latter"),
    }
)
# Openings that continue the previous question ("and the price?", "what about Sundays?").
CONTINUING: Final = ("and ", "also ", "but ", "so ", "what about ", "how about ", "and what ")
# A follow-up with fewer content words than this leans on the conversation.
MIN_CONTENT_TERMS: Final = 2
# The heuristic looks back over at most this many earlier user questions.
CONTEXT_QUESTIONS: Final = 3
# The LLM sees at most this many earlier messages, each clipped to this many characters.
PROMPT_MESSAGES: Final = 6
PROMPT_MESSAGE_CHARS: Final = 600
# A rewrite longer than this is not a question: the heuristic is used instead.
MAX_STANDALONE_CHARS: Final = 1000

CONDENSE_PROMPT: Final = (
    "Rewrite the user's follow-up question as a standalone question that can be understood "
    "without the conversation: replace pronouns and references with what they refer to. "
    "Keep its meaning and its language. Do not answer it. "
    "Reply with the standalone question only."
)

_LABEL = re.compile(r"^\s*(?:standalone\s+question|question|rewritten(?:\s+question)?)\s*:\s*", re.I)
_SURFACE_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")


class Condenser(Protocol):
    """Rewrites ``question`` so that it needs none of ``history`` to be understood."""

    async def condense(
        self, question: str, history: Sequence[Mapping[str, str]], *, deadline: float
    ) -> str: ...


def refers_back(question: str) -> bool:
    """Whether ``question`` seems to lean on what was said before."""
    tokens = words(question)
    if any(t in REFERRING for t in tokens):
        return True
    if normalize_space(question).lower().startswith(CONTINUING):
        return True
    return len(content_terms(question)) < MIN_CONTENT_TERMS


def _user_questions(history: Sequence[Mapping[str, str]]) -> list[str]:
    """Earlier user messages, the latest first."""
    return [m.get("content", "") for m in reversed(history) if m.get("role") == "user"]


def heuristic_standalone(question: str, history: Sequence[Mapping[str, str]]) -> str:
    """``question``, with the content words of the earlier questions it leans on in front.

    Looks back from the latest user question, up to the first one that stands on its
    own (the topic's anchor), at most ``CONTEXT_QUESTIONS``; words already in the
    follow-up, or repeated, are left out.
    """
    question = normalize_space(question)
    if not refers_back(question):
        return question
    seen = set(content_terms(question))
    context: list[str] = []
    for earlier in _user_questions(history)[:CONTEXT_QUESTIONS]:
        found = []
        for word in _SURFACE_WORD.findall(earlier):
            terms = content_terms(word)
            if terms and terms[0] not in seen:
                seen.add(terms[0])
                found.append(word)
        # Older questions come first: the context reads in the order it was asked.
        context[:0] = found
        if not refers_back(earlier):
            break
    if not context:
        return question
    return f"{' '.join(context)}: {question}"


class HeuristicCondenser:
    """The deterministic rewrite, for extractive mode (no LLM)."""

    async def condense(self, question: str, history: Sequence[Mapping[str, str]], *, deadline: float) -> str:
        return heuristic_standalone(question, history)


def condense_messages(question: str, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The chat messages asking a model for the standalone question."""
    speaker = {"user": "User", "assistant": "Assistant"}
    lines = [
        f"{speaker[m['role']]}: {clip(m.get('content', ''), PROMPT_MESSAGE_CHARS)}"
        for m in list(history)[-PROMPT_MESSAGES:]
        if m.get("role") in speaker
    ]
    conversation = "\n".join(lines)
    user = f"Conversation:\n{conversation}\n\nFollow-up question: {normalize_space(question)}"
    return [{"role": "system", "content": CONDENSE_PROMPT}, {"role": "user", "content": user}]


def clean_rewrite(text: str) -> str:
    """The question in a model's reply: its first line, without a label or quotes."""
    for line in text.strip().splitlines():
        question = _LABEL.sub("", line).strip().strip("\"'\u201c\u201d`").strip()
        if question:
            return question
    return ""


class LLMCondenser:
    """Asks the chat model for the standalone question; the whole reply, not streamed on."""

    def __init__(self, llm: ChatLLM) -> None:
        self.llm = llm

    async def condense(self, question: str, history: Sequence[Mapping[str, str]], *, deadline: float) -> str:
        parts: list[str] = []
        stream = self.llm.stream(condense_messages(question, history), deadline=deadline)
        try:
            async for delta in stream:
                parts.append(delta)
        finally:
            await aclose(stream)
        standalone = clean_rewrite("".join(parts))
        if not standalone or len(standalone) > MAX_STANDALONE_CHARS:
            logger.warning(
                "LLM rewrite of a follow-up unusable (%d characters): using the heuristic", len(standalone)
            )
            return heuristic_standalone(question, history)
        return standalone


def condenser_for(answerer: Answerer) -> Condenser:
    """The LLM's condenser when the answers come from an LLM, else the heuristic."""
    if isinstance(answerer, LLMAnswerer):
        return LLMCondenser(answerer.llm)
    return HeuristicCondenser()


def needs_condensing(env: Envelope) -> bool:
    """A chat with history at its first generator step (a later stage still to come)."""
    return (
        env.kind == "chat"
        and bool(env.payload.get("history"))
        and not env.payload.get("condensed")
        and len(env.route) > 1
    )


async def condense_step(condenser: Condenser, env: Envelope) -> Output:
    """The job's payload with the standalone question in place of the follow-up."""
    payload = env.payload
    question = payload["question"]
    standalone = await condenser.condense(question, payload["history"], deadline=env.deadline)
    logger.info("job_id=%s stage=generator condensed %r into %r", env.job_id, question, standalone)
    condensed = {
        **payload,
        "question": standalone,
        "query": standalone,
        "condensed": True,
        "original_question": question,
    }
    return Output(condensed, event={"standalone_question": standalone})


def answered_question(payload: Mapping[str, Any]) -> dict[str, str]:
    """Fields the answer's result adds for a condensed job: the question it answered."""
    if payload.get("condensed"):
        return {"standalone_question": str(payload["question"])}
    return {}
