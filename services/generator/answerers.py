"""Chooses the answerer from settings: an LLM when a key is set, else extractive."""

from __future__ import annotations

import logging

from libs.common.settings import GeneratorSettings
from services.generator import word_vectors
from services.generator.backends import Answerer
from services.generator.breaker import CircuitBreaker
from services.generator.extractive import ExtractiveAnswerer
from services.generator.llm import LLMAnswerer, OpenAIChat
from services.generator.resilient import ResilientChat, RetryPolicy
from services.generator.word_vectors import Similarity

logger = logging.getLogger(__name__)


def build_answerer(settings: GeneratorSettings) -> Answerer:
    """``LLMAnswerer`` over a resilient ``OpenAIChat`` when ``llm_api_key`` is non-empty,
    else extractive.

    A local OpenAI-compatible server that needs no key still needs a dummy one here
    to select LLM mode.
    """
    key = settings.llm_api_key.get_secret_value().strip() if settings.llm_api_key else ""
    if key:
        logger.info("answering with LLM %s at %s", settings.llm_model, settings.llm_base_url or "OpenAI")
        chat = OpenAIChat(
            model=settings.llm_model,
            base_url=settings.llm_base_url or None,
            api_key=key,
            timeout_s=settings.llm_timeout_s,
            max_tokens=settings.llm_max_tokens,
        )
        policy = RetryPolicy(
            max_retries=settings.llm_max_retries,
            backoff_s=settings.llm_retry_backoff_s,
            backoff_max_s=settings.llm_retry_backoff_max_s,
        )
        # One breaker for the process: every job's calls count towards it.
        breaker = CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_cooldown_s)
        return LLMAnswerer(
            ResilientChat(chat, policy, breaker),
            min_score=settings.min_score,
            context_tokens=settings.llm_context_tokens,
            min_evidence=settings.min_evidence,
            similarity=_word_vectors(settings),
        )
    logger.info("no LLM key configured: answering extractively")
    return ExtractiveAnswerer(
        min_score=settings.min_score,
        max_sentences=settings.extractive_sentences,
        min_evidence=settings.min_evidence,
        similarity=_word_vectors(settings),
    )


def _word_vectors(settings: GeneratorSettings) -> Similarity | None:
    """The extractive answerer's word vectors; None (shared words alone) when turned off
    or not to be had, which the log says."""
    if not settings.word_vectors:
        return None
    try:
        return word_vectors.load(settings.word_vectors_path)
    except word_vectors.WordVectorsMissingError as exc:
        logger.warning("answering with shared words alone, without word vectors: %s", exc)
        return None
