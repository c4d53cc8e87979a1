"""What the parse sandbox costs a small upload: before, inline and sandboxed, alternated.

    .venv/bin/python -m bench.parse_sandbox [--rounds N] [--bytes B] [--json FILE]

One process, the real local model (its tokenizer sizes the chunks, its ONNX session
embeds them), one small ``.txt`` upload parsed, chunked and embedded again and
again, the three ways taking turns round by round so they meet the same load:

- ``before``: the code before the sandbox, parse and chunk in a thread of the embedder;
- ``inline``: the handler's path for a ``.txt`` of at most ``PARSE_INLINE_BYTES``;
- ``sandbox``: the same upload forced through a child process (``PARSE_INLINE_BYTES=0``).

Reported per way: wall time of the parse alone and of parse + embed (p50, mean), and
CPU seconds per upload, the children's included (read from the fork server, which
reaps them). The embedding cache is not involved: the model embeds every time.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from typing import TYPE_CHECKING, Any

import psutil

from bench.common import context_line, markdown_table, run_context, write_json

if TYPE_CHECKING:
    from libs.common.settings import EmbedderSettings
    from services.embedder.onnx_embedder import OnnxEmbedder

WAYS = ("before", "inline", "sandbox")
SENTENCE = "The keeper of the northern lighthouse lit the lamp at dusk and wrote the weather in the log. "


def before(settings: EmbedderSettings, embedder: OnnxEmbedder, filename: str, data: bytes) -> list[Any]:
    """The embedder's parse before the sandbox (handler._parse and _chunk at 6a4973b)."""
    from services.embedder.chunking import chunk_pages
    from services.embedder.parsing import parse_document

    pages = parse_document(filename, data, settings.max_pages, max_unpacked_bytes=settings.max_unpacked_bytes)
    size = min(settings.chunk_size_tokens, embedder.max_text_tokens)
    return chunk_pages(
        pages,
        "d",
        filename,
        size_words=size,
        overlap_words=0,
        count_tokens=embedder.count_tokens,
        max_tokens=embedder.max_text_tokens,
        size_tokens=size,
        overlap_tokens=settings.chunk_overlap_tokens,
    )


def cpu_seconds(server: psutil.Process | None) -> float:
    """This process's CPU time, plus every parse child's (the fork server reaps them,
    before the sandbox learns a child's exit status)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if server is not None:
        times = server.cpu_times()
        total += times.children_user + times.children_system
    return total


async def measure(rounds: int, size: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from libs.common.envelope import Envelope
    from libs.common.settings import EmbedderSettings
    from services.embedder.handler import EmbedHandler
    from services.embedder.onnx_embedder import load_onnx_embedder

    settings = EmbedderSettings()
    embedder = load_onnx_embedder(settings)
    # Never connected: a parse this quick never asks Valkey whether it is still wanted.
    client = aioredis.Redis()
    inline = EmbedHandler(client, embedder, settings)
    boxed = EmbedHandler(client, embedder, settings.model_copy(update={"parse_inline_bytes": 0}))
    boxed.sandbox.warm()
    data = (SENTENCE * (size // len(SENTENCE) + 1)).encode()[:size]
    env = Envelope.new("ingest", "docs", {"document_id": "d", "filename": "a.txt", "size": size}, 60)

    async def parse(way: str) -> list[str]:
        if way == "before":
            chunks = await asyncio.to_thread(before, settings, embedder, "a.txt", data)
            return [c.text for c in chunks]
        handler = inline if way == "inline" else boxed
        _pages, found = await handler._parse(env, data)
        return [c["text"] for c in found]

    async def embed(texts: list[str]) -> None:
        await asyncio.to_thread(embedder.embed, texts)

    texts = {way: await parse(way) for way in WAYS}  # warm-up; and every way cuts the same chunks
    assert texts["before"] == texts["inline"] == texts["sandbox"], "the ways disagree"
    await asyncio.sleep(1)  # the fork server has imported the parsers
    server = next((c for c in psutil.Process().children() if "forkserver" in " ".join(c.cmdline())), None)
    wall: dict[str, list[float]] = {w: [] for w in WAYS}
    total: dict[str, list[float]] = {w: [] for w in WAYS}
    cpu: dict[str, float] = dict.fromkeys(WAYS, 0.0)
    for _ in range(rounds):
        for way in WAYS:
            cpu0 = cpu_seconds(server)
            t0 = time.perf_counter()
            chunks = await parse(way)
            t1 = time.perf_counter()
            await embed(chunks)
            t2 = time.perf_counter()
            cpu[way] += cpu_seconds(server) - cpu0
            wall[way].append(t1 - t0)
            total[way].append(t2 - t0)
    await inline.aclose()
    await boxed.aclose()
    rows = {
        way: {
            "parse_p50_ms": round(statistics.median(wall[way]) * 1000, 2),
            "parse_mean_ms": round(statistics.fmean(wall[way]) * 1000, 2),
            "ingest_p50_ms": round(statistics.median(total[way]) * 1000, 2),
            "cpu_ms_per_upload": round(cpu[way] / rounds * 1000, 2),
        }
        for way in WAYS
    }
    return {"bytes": size, "chunks": len(texts["before"]), "rounds": rounds, "ways": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--bytes", type=int, default=2000, help="size of the .txt upload")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    context = {**run_context("bench.parse_sandbox"), "embeddings": "local"}
    figures = asyncio.run(measure(args.rounds, args.bytes))
    print(context_line(context))
    print(f"a {figures['bytes']}-byte .txt, {figures['chunks']} chunks, {figures['rounds']} rounds per way")
    header = ["way", "parse p50 ms", "parse mean ms", "parse+embed p50 ms", "CPU ms / upload"]
    rows = [[way, *figures["ways"][way].values()] for way in WAYS]
    print(markdown_table(header, rows))
    write_json(args.json, {**context, **figures})


if __name__ == "__main__":
    main()
