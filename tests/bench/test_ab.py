"""bench.ab's pure parts: the run order, the figures it reads and the table it prints.

No bench runs here (tests/bench/test_benches.py smoke-runs the benches themselves).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.ab import FIGURES, HEADER, order, summarise, verdict


def test_the_order_alternates_so_that_neither_side_always_goes_first() -> None:
    assert order(3) == [(0, "head"), (0, "base"), (1, "base"), (1, "head"), (2, "head"), (2, "base")]
    runs = order(4)
    assert [side for _, side in runs].count("head") == 4
    firsts = [runs[i][1] for i in range(0, len(runs), 2)]
    assert firsts == ["head", "base", "head", "base"]


def test_verdict_knows_which_way_is_better() -> None:
    assert verdict(1.04, "higher") == "within 5 %"
    assert verdict(0.96, "lower") == "within 5 %"
    assert verdict(0.90, "higher") == "head WORSE by 10%"
    assert verdict(0.90, "lower") == "head better by 10%"
    assert verdict(1.20, "lower") == "head WORSE by 20%"


def test_pipeline_table_of_medians_and_ratios() -> None:
    def run(jobs_per_s: float, p50: float, valkey_us: float) -> dict[str, Any]:
        cpu_us = {"valkey": valkey_us, "embedder": 40.0, "bench": 1000.0}
        rows = {
            "documind": {
                "jobs_per_s": jobs_per_s,
                "rt_p50_ms": p50,
                "rt_p99_ms": 2 * p50,
                "cpu_us_per_job": cpu_us,
            },
            "documind drain": {"jobs_per_s": jobs_per_s * 1.2},
            "documind[read_count=8]": {"jobs_per_s": 1.0, "rt_p50_ms": 99.0},  # a variant: not read
            "rq": {"jobs_per_s": 450.0, "rt_p50_ms": 2.0},
        }
        return {"config": {"loadavg_1m_start": 0.5}, "rows": rows}

    head = [run(7000, 2.0, 80), run(9000, 2.2, 100), run(8000, 2.1, 60)]
    base = [run(10000, 2.0, 60), run(8000, 2.0, 60)]
    rows = {row[0]: row for row in summarise("pipeline", head, base)}
    assert all(len(row) == len(HEADER) for row in rows.values())

    e2e = rows["DocuMind end to end, jobs/s"]
    assert e2e[1:6] == ["higher", 8000, 9000, "0.889", "head WORSE by 11%"]
    assert e2e[6:] == ["7,000 / 9,000 / 8,000", "10,000 / 8,000"]
    p50 = rows["round trip p50, ms"]
    assert p50[1:6] == ["lower", 2.1, 2.0, "1.050", "within 5 %"]
    # The service processes' CPU per job, the bench's own left out.
    cpu = rows["CPU µs/job end to end, valkey + stages"]
    assert cpu[2:4] == [120.0, 100.0]
    assert rows["RQ jobs/s (control: same code)"][4] == "1.000"
    # Rows the JSON lacks (no --http-jobs run) are left out, not zero.
    assert "DocuMind HTTP ingress, jobs/s" not in rows


def test_latency_figures_are_read_under_its_key_whatever_the_concurrency() -> None:
    def run(chat_p50: float, req_per_s: float) -> dict[str, Any]:
        rows = {
            "chat, sequential": {"p50_ms": chat_p50, "p99_ms": 3 * chat_p50},
            "search, sequential": {"p50_ms": chat_p50 / 2},
            "chat, 8 concurrent clients": {
                "p50_ms": 50.0,
                "req_per_s": req_per_s,
                "cpu_ms_per_request": {"embedder": 3.0, "gateway": 1.0, "bench": 9.0},
            },
            "search, 8 concurrent clients": {"p50_ms": 40.0, "req_per_s": 300.0},
        }
        return {"config": {}, "latency": {"rows": rows}}

    rows = {row[0]: row for row in summarise("latency", [run(10.0, 200.0)], [run(9.0, 220.0)])}
    assert set(rows) == {name for name, _, _ in FIGURES["latency"]}
    assert rows["chat sequential p50, ms"][2:6] == [10.0, 9.0, "1.111", "head WORSE by 11%"]
    assert rows["chat concurrent, req/s"][2:6] == [200.0, 220.0, "0.909", "head WORSE by 9%"]
    assert rows["CPU ms/chat concurrent, services"][2] == pytest.approx(4.0)
