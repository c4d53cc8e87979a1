"""The generator's settings: the LLM, its retries and breaker, and the answerers."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from libs.common.settings_base import WorkerSettings


class GeneratorSettings(WorkerSettings):
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    # Longest wait for the LLM to start answering, or for the next piece of its stream.
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_tokens: int = Field(default=512, ge=1)
    # Retries of one LLM call on 429, 5xx, timeouts and connection errors, made only
    # before the first token and never past the job's deadline; Retry-After wins.
    llm_max_retries: int = Field(default=2, ge=0)
    llm_retry_backoff_s: float = Field(default=0.5, ge=0)
    llm_retry_backoff_max_s: float = Field(default=8.0, ge=0)
    # This many failed calls in a row open the circuit breaker: calls fail fast for
    # llm_breaker_cooldown_s, then one probe call decides whether it closes again.
    llm_breaker_failures: int = Field(default=5, ge=1)
    llm_breaker_cooldown_s: float = Field(default=30.0, gt=0)
    # Estimated tokens the numbered sources may take in the prompt; the lowest-ranked
    # sources that do not fit are left out.
    llm_context_tokens: int = Field(default=4000, ge=64)
    # Hits whose score (the dense cosine) is below this are not used as evidence.
    min_score: float = 0.2
    # The answerers abstain ("I could not find ...", no citations, "answerable": false)
    # when the evidence score is below this: half the (weighted) share of the question's
    # content words in the best passage plus half the best hit's evidence score (its
    # relevance from the fused ranking, else its cosine); chosen by leave-one-out
    # cross-validation on the pdf-qa questions (services/generator/evidence.py,
    # DEFAULT_MIN_EVIDENCE, which a test holds equal to this). 0 never abstains for weakness.
    min_evidence: float = 0.394
    # Sentences the extractive answerer quotes.
    extractive_sentences: int = Field(default=3, ge=1)
    # The extractive answerer also weighs how close a sentence's words are in meaning to
    # the question's (services/generator/word_vectors.py); the file of word vectors
    # (default: under .documind/models, written at start when missing).
    word_vectors: bool = True
    word_vectors_path: Path | None = None
