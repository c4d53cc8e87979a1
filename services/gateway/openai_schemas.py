"""Request and response bodies of the OpenAI-compatible facade (``openai_compat.py``).

The shapes are OpenAI's (``chat.completion``, ``chat.completion.chunk``, ``model``,
``list``, ``{"error": ...}``); DocuMind's own data rides in one extra top-level field,
``documind``, which OpenAI clients keep as an unknown field (the ``openai`` Python
client: ``completion.model_extra["documind"]``).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.models import Citation

# The roles a message may have (``openai_compat.split_messages`` refuses others, with a
# message that names them; the schema lists them).
ROLES: Final = ("system", "developer", "user", "assistant")
# OpenAI's text part, the one kind of content part DocuMind reads.
_TEXT_PART: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    "required": ["type", "text"],
}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(json_schema_extra={"enum": list(ROLES)})
    # A string, or OpenAI's content parts ([{"type": "text", "text": ...}, ...]).
    content: str | list[dict[str, Any]] | None = Field(
        default=None,
        json_schema_extra={
            "anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}, {"type": "null"}]
        },
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Send a last chunk with ``usage`` (and no choices) before ``[DONE]``.
    include_usage: bool = False


# The most messages one chat completion request may carry.
MAX_MESSAGES: Final = 2048


class ChatCompletionRequest(BaseModel):
    # OpenAI's sampling and output parameters (temperature, max_tokens, n, user, ...)
    # are accepted and ignored: the pipeline's settings decide.
    model_config = ConfigDict(extra="ignore")

    # The collection to answer from.
    model: str
    # The conversation; the last message is the user's question (JSON Schema cannot say
    # "the last item", so ``split_messages`` checks it: 400 otherwise).
    # At most MAX_MESSAGES: only the latest turns are used
    # (``MAX_HISTORY_MESSAGES``), and a body of thousands of tiny messages costs the
    # gateway ten times a plain question's parse before any of them is read.
    messages: list[ChatMessage] = Field(max_length=MAX_MESSAGES, json_schema_extra={"minItems": 1})
    stream: bool = False
    stream_options: StreamOptions | None = None
    # DocuMind extension: chunks to retrieve (default DOCUMIND_DEFAULT_TOP_K, at most
    # DOCUMIND_MAX_TOP_K: ``openapi.limits``).
    top_k: int | None = Field(default=None, ge=1)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "documind"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class DocuMindExtra(BaseModel):
    """The ``documind`` field of a completion (and of a stream's final chunk)."""

    # The pipeline job that answered: GET /v1/jobs/{job_id} shows its result and timings.
    job_id: str
    # "extractive" or "llm:<model>".
    mode: str
    # The answerer declined: nothing in the collection answers the question (the answer
    # says so, and cites nothing).
    abstained: bool = False
    # Whether the documents answer the question: always ``not abstained`` (``false`` is
    # "I could not find this in your documents").
    answerable: bool = True
    # The sources the answer cites as [n].
    citations: list[Citation]
    # With earlier turns in ``messages``: the standalone question retrieved and answered.
    standalone_question: str | None = None
    # Streams only, and only when the streamed content is not the final answer (a
    # retried LLM attempt began differently from what was already sent): the answer.
    answer: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class Usage(BaseModel):
    # Estimated (about four characters a token): the pipeline does not count tokens.
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    # The collection that answered.
    model: str
    choices: list[Choice]
    usage: Usage
    documind: DocuMindExtra


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
