"""Chooses the answerer from settings: an LLM when a key is set, else extractive."""

from __future__ import annotations

import logging

from libs.common.settings import GeneratorSettings
from services.generator.backends import Answerer
from services.generator.extractive import ExtractiveAnswerer
from services.generator.llm import LLMAnswerer, OpenAIChat

logger = logging.getLogger(__name__)


def build_answerer(settings: GeneratorSettings) -> Answerer:
    """``LLMAnswerer`` over ``OpenAIChat`` when ``llm_api_key`` is non-empty, else extractive.

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
        return LLMAnswerer(chat, min_score=settings.min_score)
    logger.info("no LLM key configured: answering extractively")
    return ExtractiveAnswerer(min_score=settings.min_score, max_sentences=settings.extractive_sentences)
