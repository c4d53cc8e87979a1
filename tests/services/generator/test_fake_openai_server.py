"""The scripted server the generator tests use speaks OpenAI's API as the SDK expects."""

from __future__ import annotations

import openai
import pytest

from tests.fakes.openai_server import DEFAULT_REPLY, MODEL, FakeOpenAI, malformed_stream, ok, status


def client(server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=5)


def test_models_and_plain_completions(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ok("Refunds take 14 days [1]."))
    with client(fake_llm) as sdk:
        assert [m.id for m in sdk.models.list()] == [MODEL]
        first = sdk.chat.completions.create(model="x", messages=[{"role": "user", "content": "q"}])
        second = sdk.chat.completions.create(model="x", messages=[{"role": "user", "content": "q"}])
    assert first.choices[0].message.content == "Refunds take 14 days [1]."
    assert second.choices[0].message.content == DEFAULT_REPLY  # the script ran out
    assert [r.stream for r in fake_llm.requests] == [False, False]


def test_streamed_completions_and_scripted_errors(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ok(chunks=["Re", "funds"]), status(429, "slow down", retry_after_ms=250))
    with client(fake_llm) as sdk:
        stream = sdk.chat.completions.create(model="x", messages=[], stream=True)
        deltas = [c.choices[0].delta.content for c in stream if c.choices]
        with pytest.raises(openai.RateLimitError) as info:
            sdk.chat.completions.create(model="x", messages=[])
    assert deltas == ["", "Re", "funds", None]
    assert info.value.response.headers["retry-after-ms"] == "250"
    assert "slow down" in info.value.message


def test_a_plain_request_for_a_malformed_answer_gets_broken_json(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(malformed_stream())
    with client(fake_llm) as sdk, pytest.raises(ValueError):
        sdk.chat.completions.create(model="x", messages=[])
