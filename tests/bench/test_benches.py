"""Smoke runs of the benchmarks in their smallest modes, so that the bench code cannot rot.

Each runs as its own command (the way it is documented) with ``--json``, and
the figures it writes are checked for sanity, not for speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact-subset"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def run_bench(module: str, out: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.mark.skipif(not SCIFACT.exists(), reason=f"no SciFact subset at {SCIFACT}")
def test_scifact_benches_on_one_stack(tmp_path: Path) -> None:
    args = ("--docs", "30", "--concurrency", "4", "--passes", "1")
    fig = run_bench("bench.scifact", tmp_path / "scifact.json", *args)

    assert fig["config"]["documents"] == 30
    ingest = fig["ingest"]
    assert ingest["docs"] == 30
    assert ingest["chunks"] >= 30
    assert ingest["texts_embedded"] >= ingest["chunks"]
    assert ingest["raw_docs_per_s"] > 0 and ingest["stack_docs_per_s"] > 0
    assert ingest["ratio"] == pytest.approx(ingest["stack_docs_per_s"] / ingest["raw_docs_per_s"], rel=0.01)
    assert set(ingest["cpu_s"]) == {"gateway", "embedder", "retriever", "generator", "valkey", "bench"}

    latency = fig["latency"]
    rows = latency["rows"]
    questions = fig["config"]["judged_queries"]
    for name in ("chat, sequential", "search, sequential", "chat, 4 concurrent clients"):
        assert rows[name]["n"] == questions
        assert 0 < rows[name]["p50_ms"] <= rows[name]["p99_ms"]
        assert rows[name]["answer_cache_hits"] == 0  # Cache-Control: no-cache
        assert rows[name]["cpu_ms_per_request"]["embedder"] > 0
    assert rows["chat, answer cache hit, sequential"]["answer_cache_hits"] == questions
    assert latency["answer_modes"] == ["extractive"]
    assert latency["chat_sequential_median_ms"]["embedder"] > 0
    assert rows["floor: the stack's embedder + brute-force top-k, in process"]["p50_ms"] > 0

    quality = fig["quality"]
    assert quality["queries"] == questions > 0
    for name, scores in quality["rows"].items():
        assert 0.0 <= scores["ndcg@10"] <= 1.0, name
        assert 0.0 <= scores["recall@10"] <= 1.0, name
    # Judged documents among 30: any working retrieval finds most of them.
    assert all(scores["ndcg@10"] > 0.5 for scores in quality["rows"].values()), quality["rows"]

    memory = fig["memory"]
    assert list(memory)[:3] == ["idle after start", "peak during ingestion", "idle after ingestion"]
    for phase, sizes in memory.items():
        assert set(sizes) == {"gateway", "embedder", "retriever", "generator", "valkey", "total"}, phase
        assert all(size > 0 for size in sizes.values()), phase
    assert memory["peak during ingestion"]["embedder"] >= memory["idle after start"]["embedder"] * 0.9


def test_pipeline_bench_with_replicas(tmp_path: Path) -> None:
    fig = run_bench(
        "bench.pipeline",
        tmp_path / "pipeline.json",
        "--jobs", "400", "--rounds", "20", "--repeat", "1", "--warmup", "5", "--no-variants",
        "--http-jobs", "100", "--replicas", "2",
    )  # fmt: skip
    rows = fig["rows"]
    for name in ("documind", "documind drain", "documind http-ingress", "rq", "documind replicas=2"):
        assert rows[name]["jobs_per_s"] > 0, name
    assert rows["documind replicas=2"]["jobs"] == 400
    assert "embedder-2" in rows["documind replicas=2"]["cpu_us_per_job"]
    assert fig["config"]["ratios"]["throughput_replicas=2_vs_1"] > 0


def test_edge_scale_bench_in_its_smallest_mode(tmp_path: Path) -> None:
    fig = run_bench(
        "bench.edge_scale", tmp_path / "edge.json", "--chunks", "3000", "--queries", "20", "--ef", "64"
    )
    assert fig["chunks"] == 3000
    assert fig["raw_load_chunks_per_s"] > 0 and fig["optimize_s"] >= 0
    assert set(fig["search_ms"]) == {"unoptimised", "optimised", "policy"}
    for shard, searches in fig["search_ms"].items():
        assert {"dense", "hybrid", "dense + exclude 200 docs", "hybrid + exclude 200 docs"} <= set(searches)
        for name, (p50, p99) in searches.items():
            assert 0 < p50 <= p99, (shard, name)
    assert 0.9 <= fig["hnsw_ef"]["64"]["recall@10"] <= 1.0
    assert 0.9 <= fig["policy_recall@10"] <= 1.0


def test_valkey_memory_bench(tmp_path: Path) -> None:
    fig = run_bench("bench.memory", tmp_path / "valkey.json", "valkey", "--chats", "40", "--clients", "2")
    figures = fig["figures"]
    assert figures["chats"] == 40
    assert figures["used_memory_after_bytes"] > figures["used_memory_before_bytes"]
    kinds = figures["keys"]
    assert set(kinds) == {"job hash", "done stream", "events stream", "answer-cache entry"}
    assert (
        kinds["job hash"]["count"] == 40
        and kinds["job hash"]["ttl_s_max"] > kinds["events stream"]["ttl_s_max"]
    )
    assert figures["kept_per_job_after_events_expire_bytes"] == kinds["job hash"]["bytes_median"] > 0


def test_waiters_bench(tmp_path: Path) -> None:
    fig = run_bench("bench.waiters", tmp_path / "waiters.json", "--jobs", "30", "--ordinary", "10")
    figures = fig["figures"]
    assert figures["streams_held"] == figures["streams_ended_done"] == 30
    assert figures["waiters_held"] == figures["waiters_done"] == 30
    assert figures["ordinary"]["statuses"] == {"200": 10}
    assert figures["gateway_valkey_connections"]["documind-gateway-waiters"] <= 3


@pytest.mark.skipif(not SCIFACT.exists(), reason=f"no SciFact subset at {SCIFACT}")
def test_answerer_cpu_bench(tmp_path: Path) -> None:
    fig = run_bench("bench.answerer_cpu", tmp_path / "answerer.json", "--questions", "5")
    assert fig["scifact_cpu_ms_per_answer"] > 0


def test_cluster_bench_on_1_2_and_3_primaries(tmp_path: Path) -> None:
    args = ("--jobs", "300", "--warmup", "20", "--repeat", "1")
    fig = run_bench("bench.cluster", tmp_path / "cluster.json", *args)
    rows = fig["primaries"]
    assert list(rows) == ["1 primaries", "2 primaries", "3 primaries"]
    for n, row in enumerate(rows.values(), start=1):
        assert row["jobs"] == 300 and row["jobs_per_s"] > 0
        assert len(row["valkey_cpu_us_per_job"]) == len(row["partitions_per_primary"]) == n
        assert sum(row["partitions_per_primary"].values()) == fig["config"]["partitions"]
        assert row["valkey_cpu_us_per_job_total"] > 0
    wait = fig["wait"]
    if isinstance(wait, dict):  # DOCUMIND_VALKEY_WAIT_REPLICAS exists
        assert wait["throughput_wait_1_vs_0"] > 0
        for row in wait["rows"].values():
            assert len(row["valkey_cpu_us_per_job"]) == 6  # 3 primaries, 3 replicas
    else:
        assert wait.startswith("skipped")


def test_wait_cost_bench(tmp_path: Path) -> None:
    """bench/wait_cost.py in its smallest mode: the figures are sane, and the primary ran
    WAIT only in the rounds that wait (the bench measures what it says)."""
    args = ("--ops", "30", "--jobs", "30", "--concurrency", "4", "--rounds", "1")
    data = run_bench("bench.wait_cost", tmp_path / "wait.json", *args)
    waits = {row["mode"]: row["waits"] for row in data["rounds"]}
    # 30 submits and 30 commits, then 30 jobs of a submit and up to 3 commits each.
    assert waits["nowait"] == 0 and waits["wait"] >= 90
    for figure in data["summary"].values():
        assert figure["wait"] > 0 and figure["nowait"] > 0
