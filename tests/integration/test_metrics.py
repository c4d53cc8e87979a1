"""Every service serves /metrics; after a few jobs the documind_* series have moved."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.common import constants
from libs.common.healthcheck import main as healthcheck_main
from libs.common.valkey_server import free_port
from tests.fakes.openai_server import FakeOpenAI, ok
from tests.integration.harness import Stack

pytestmark = pytest.mark.timeout(180)


def scrape(
    url: str, headers: dict[str, str] | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = httpx.get(url, headers=headers, timeout=10, follow_redirects=True)
    assert resp.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (-1 when there are none)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    return sum(found) if found else -1.0


def test_each_service_exposes_its_series_and_they_move(valkey_url: str, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("embedder", "retriever", "generator")}
    with FakeOpenAI(default=ok("The ferry leaves at nine [1].")) as llm:
        stack = Stack(valkey_url, tmp_path, DOCUMIND_LLM_BASE_URL=llm.base_url, DOCUMIND_LLM_API_KEY="k")
        try:
            for name, port in ports.items():
                stack.start(name, DOCUMIND_METRICS_PORT=str(port))
            stack.start("gateway")
            stack.wait_ready()
            job_ids = []
            with stack.client(timeout=30) as client:
                up = client.post(
                    "/v1/collections/m/documents", files={"file": ("f.txt", b"The ferry leaves at nine.")}
                )
                job_ids.append(up.json()["job_id"])
                assert stack.wait_job(job_ids[0])["status"] == "done"
                for question in ("When does the ferry leave?", "Is there a ferry at nine?"):
                    job_id = client.post("/v1/chat", json={"question": question, "collection": "m"}).json()[
                        "job_id"
                    ]
                    job_ids.append(job_id)
                    assert stack.wait_job(job_id)["status"] == "done", stack.logs()
            metrics = {name: scrape(f"http://127.0.0.1:{port}/metrics") for name, port in ports.items()}
            metrics["gateway"] = scrape(stack.gateway_metrics_url)
            # The container healthcheck passes for every live worker process.
            for name, port in ports.items():
                assert healthcheck_main([str(port)]) == 0, name
        finally:
            stack.stop()

    emb, ret, gen, gw = metrics["embedder"], metrics["retriever"], metrics["generator"], metrics["gateway"]
    assert value(emb, "documind_messages_total", stage="embedder", outcome="forwarded") >= 3
    # Jobs by kind, stage and outcome.
    assert value(ret, "documind_messages_total", kind="ingest", stage="retriever", outcome="done") >= 1
    assert value(ret, "documind_messages_total", kind="chat", stage="retriever", outcome="forwarded") >= 2
    assert value(gen, "documind_messages_total", kind="chat", stage="generator", outcome="done") >= 2
    assert value(gen, "documind_messages_total", kind="ingest") == -1  # no such series
    for stage, samples in (("embedder", emb), ("retriever", ret), ("generator", gen)):
        assert value(samples, "documind_stage_seconds_count", stage=stage) >= 1
        assert value(samples, "documind_queue_wait_seconds_count", stage=stage) >= 1
        assert value(samples, "documind_batch_size_count", stage=stage) >= 1
        # Backlog gauges are refreshed by every worker's maintenance loop.
        for gauge in ("documind_stream_length", "documind_consumer_group_lag", "documind_pending_messages"):
            for lane in constants.STAGE_LANES[stage]:
                assert value(samples, gauge, stage=stage, lane=lane) >= 0, (gauge, lane)
        assert value(samples, "documind_dead_letter_stream_length") == 0
        # One heartbeat per worker loop (lane), which the container healthcheck reads.
        for lane in constants.STAGE_LANES[stage]:
            assert value(samples, "documind_worker_heartbeat_timestamp_seconds", stage=stage, lane=lane) > 0

    assert value(emb, "documind_embedding_texts_total") >= 3
    assert value(emb, "documind_embedding_batch_texts_count") >= 2
    assert value(gen, "documind_llm_time_to_first_token_seconds_count") >= 2
    assert value(gen, "documind_llm_request_seconds_count") >= 2
    assert value(gen, "documind_llm_completion_tokens_total") >= 2
    assert value(gw, "documind_http_requests_total", route="/v1/chat", status="202") == 2
    assert value(gw, "documind_cache_requests_total", cache="answer", result="miss") == 2
    # Labels never carry job ids.
    for samples in metrics.values():
        for _name, labels in samples:
            assert not any(job_id in v for job_id in job_ids for _k, v in labels)
