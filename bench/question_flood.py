"""One tenant's flood of questions against another tenant's questions.

    .venv/bin/python -m bench.question_flood [--senders 50] [--flood-s 20] [--json out.json]

On the embedded stack (``documind up``'s, default settings: no LLM, extractive answers):
tenants ``evil`` and ``victim`` each upload SciFact abstracts to a collection of their own
(``--flood-docs`` of ``--docs`` are evil's). ``victim`` first asks ``--alone`` questions one
every ``--interval-s`` with nothing else running (its time alone). Then ``evil`` floods
``POST /v1/chat`` from ``--senders`` concurrent connections for ``--flood-s`` seconds
(distinct questions of ``--flood-chars`` characters, costly to embed; ``top_k`` 50, the
answer cache bypassed; each sender posts again as soon as it is answered, after a ``429``
50 ms later), never waiting on its answers: it keeps its cap of questions in flight
(``DOCUMIND_TENANT_MAX_INTERACTIVE``) queued. Meanwhile ``victim`` asks one
question every ``--interval-s`` (cache bypassed), each on a connection of its own and
waited on up to 30 s: a question not done by then counts as a failure.

Reported: the victim's time to a final answer (POST to done) alone and during the flood
(p50, p90, max), its failures, and the flood's accepted and refused (429) questions.
``bench/RESULTS.md``, "A tenant's flood of questions against another tenant's".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.client import Http
from bench.common import context_line, loadavg, run_context, sigterm_as_interrupt, write_json
from bench.fairness import tenant_client, upload
from bench.stack import BenchStack, load_scifact

# A victim's question waited on longer than this counts as a failure.
WAIT_S = 30.0
NO_CACHE = {"Cache-Control": "no-cache"}
# The flood's question, repeated to ``--flood-chars``: a long question is costly to embed.
FLOOD_TEXT = (
    "Considering every abstract in this collection, which findings about protein expression, "
    "cell signalling and clinical outcomes in patients are reported, and how strong is the evidence; "
)


Answer = tuple[float, dict[str, float]]


async def victim_question(tenant: Http, n: int) -> Answer | None:
    """Ask one question on a new connection and wait for its answer: seconds and the
    job's timings per stage, or None for a failure (refused, failed, or not done within
    ``WAIT_S``)."""
    http = await Http.connect(tenant.port)
    http.auth = tenant.auth
    try:
        started = time.perf_counter()
        body = {"question": f"What does study {n} report about vitamin D?", "collection": "mine"}
        status, accepted = await http.call("POST", "/v1/chat", body, NO_CACHE)
        if status != 202:
            return None
        job = await http.wait_job(accepted["job_id"], timeout_s=WAIT_S)
        if job["status"] != "done":
            return None
        return time.perf_counter() - started, dict(job.get("timings") or {})
    except TimeoutError:
        return None
    finally:
        await http.close()


async def ask_every(tenant: Http, interval_s: float, until: float, first: int) -> list[Answer | None]:
    """One question every ``interval_s`` until ``until`` (monotonic), each in a task of its own."""
    tasks: list[asyncio.Task[Answer | None]] = []
    n = first
    while time.monotonic() < until:
        tasks.append(asyncio.create_task(victim_question(tenant, n)))
        n += 1
        await asyncio.sleep(interval_s)  # the victim's pace, not a synchronisation
    return list(await asyncio.gather(*tasks))


async def sender(tenant: Http, index: int, until: float, chars: int, counts: dict[str, int]) -> None:
    """Post the flood's questions on one connection until ``until``, never waiting on answers."""
    http = await Http.connect(tenant.port)
    http.auth = tenant.auth
    text = (FLOOD_TEXT * (chars // len(FLOOD_TEXT) + 1))[:chars]
    n = 0
    try:
        while time.monotonic() < until:
            question = f"(sender {index}, question {n}) {text}?"
            status, _ = await http.call(
                "POST", "/v1/chat", {"question": question, "collection": "flood", "top_k": 50}, NO_CACHE
            )
            n += 1
            if status == 202:
                counts["accepted"] += 1
            elif status == 429:
                counts["refused"] += 1
                await asyncio.sleep(0.05)  # as a client told to come back later
            else:
                counts["other"] += 1
    finally:
        await http.close()


def summary(answers: list[Answer | None]) -> dict[str, Any]:
    """Time to the answer (p50, p90, max), failures, and the median of each job timing
    (a stage's handling, "<stage>.wait" its queueing) in milliseconds."""
    done = sorted(a[0] for a in answers if a is not None)
    if not done:
        return {"asked": len(answers), "answered": 0, "failures": len(answers)}
    q = statistics.quantiles(done, n=10, method="inclusive") if len(done) > 1 else [done[0]] * 9
    timings: dict[str, list[float]] = {}
    for a in answers:
        for name, seconds in (a[1] if a is not None else {}).items():
            timings.setdefault(name, []).append(seconds)
    return {
        "asked": len(answers),
        "answered": len(done),
        "failures": len(answers) - len(done),
        "p50_ms": round(statistics.median(done) * 1000, 1),
        "p90_ms": round(q[8] * 1000, 1),
        "max_ms": round(done[-1] * 1000, 1),
        "timings_p50_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in sorted(timings.items())},
    }


async def run(port: int, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    evil, victim = await tenant_client(port, "evil"), await tenant_client(port, "victim")
    try:
        flood_docs = texts[: args.flood_docs]
        for tenant, collection, part in (
            (evil, "flood", flood_docs),
            (victim, "mine", texts[args.flood_docs :]),
        ):
            for job_id in await upload(
                tenant, collection, [(f"a{i}.txt", t.encode()) for i, t in enumerate(part)]
            ):
                job = await tenant.wait_job(job_id)
                if job["status"] != "done":
                    raise RuntimeError(f"upload to {collection}: {job}")
        alone_until = time.monotonic() + args.alone * args.interval_s
        alone = await ask_every(victim, args.interval_s, alone_until, 0)
        counts = {"accepted": 0, "refused": 0, "other": 0}
        until = time.monotonic() + args.flood_s
        senders = [
            asyncio.create_task(sender(evil, i, until, args.flood_chars, counts)) for i in range(args.senders)
        ]
        flood_times = await ask_every(victim, args.interval_s, until, 1000)
        await asyncio.gather(*senders)
    finally:
        await evil.close()
        await victim.close()
    return {"alone": summary(alone), "flood": summary(flood_times), "evil": counts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--senders", type=int, default=50, help="the flooding tenant's concurrent connections")
    p.add_argument("--flood-s", type=float, default=20.0, help="how long the flood lasts")
    p.add_argument("--interval-s", type=float, default=0.5, help="the victim's pace")
    p.add_argument("--alone", type=int, default=10, help="victim questions before the flood")
    p.add_argument("--docs", type=int, default=40, help="SciFact abstracts: the victim's, but --flood-docs")
    p.add_argument("--flood-docs", type=int, default=3, help="of those, the flooding tenant's")
    p.add_argument("--flood-chars", type=int, default=1500, help="length of the flood's questions")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    config = run_context("bench.question_flood")
    texts = list(load_scifact(args.docs).docs.values())[: args.docs]
    with sigterm_as_interrupt(), BenchStack() as stack:
        config["embedder"] = stack.embedder_model()
        figures = asyncio.run(run(stack.port, texts, args))
        config["loadavg_1m_end_of_flood"] = loadavg()
    config["loadavg_1m_end"] = loadavg()
    print(context_line(config))
    for name in ("alone", "flood"):
        f = figures[name]
        print(
            f"victim {name}: {f['answered']}/{f['asked']} answered, p50 {f.get('p50_ms')} ms, "
            f"p90 {f.get('p90_ms')} ms, max {f.get('max_ms')} ms, failures {f['failures']}; "
            f"median timings (ms) {f.get('timings_p50_ms')}"
        )
    evil = figures["evil"]
    print(f"evil: {evil['accepted']} accepted, {evil['refused']} refused (429), {evil['other']} other")
    write_json(args.json, {"config": config, **figures})


if __name__ == "__main__":
    main()
