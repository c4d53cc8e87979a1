"""pdf-qa search in process: page Recall@1/@5/@10 and MRR@10, as ``score.py --search`` computes them.

    .venv/bin/python -m bench.pdfqa_eval [--json FILE]

No services: each PDF of ``../shared/data/pdf-qa/pdfs.json`` (installed by its
``install.sh``) goes through the embedder's own parse entry point
(``parse_job.parse_and_chunk``, with the ``ChunkSpec`` and limits the embedder
builds from ``EmbedderSettings()`` and its backend: token-sized chunks), its
chunks are embedded as the embedder's handler embeds them (:func:`embedded_texts`)
by ``build_embedder(EmbedderSettings())``, and indexed into an ``EdgeStore`` with
the retriever's BM25 vectors (``handler.sparse_text``, ``build_bm25``). Each
answerable question of ``dev.jsonl`` is then searched as the retriever's handler
searches (``bm25.query`` of the question, ``build_fusion(RetrieverSettings())``,
top 10), and scored as score.py scores a search: a hit counts when its filename
is the question's PDF and its page one of the acceptable pages.

Parses are cached under ``.documind/bench-cache/pdfqa/`` keyed by the PDFs and the
source of ``services/embedder`` and ``libs/common/models.py`` (a change to parsing
or chunking parses again); embeddings by the model and a hash of the embedded texts.
Also printed: how often the first hit is on a page the parser calls a contents or
index page (``Page.kind``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import pickle
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.tune_retrieval import embed_cached
from libs.common.models import Chunk, Hit
from libs.common.settings import EmbedderSettings, RetrieverSettings
from services.embedder.backends import Embedder, build_embedder
from services.embedder.parse_job import ChunkSpec, ParseJob, ParseLimits, parse_and_chunk
from services.embedder.parsing import parse_document
from services.embedder.structure import embedded_text
from services.retriever.edge_store import EdgeStore
from services.retriever.handler import sparse_text
from services.retriever.sparse import Bm25
from services.retriever.stores import build_bm25, build_fusion

ROOT = Path(__file__).resolve().parents[1]
PDFQA = ROOT.parent / "shared" / "data" / "pdf-qa"
CACHE = ROOT / ".documind" / "bench-cache" / "pdfqa"
TOP_K = 10
# The sources whose change changes the chunks (the parse cache's key).
PARSE_SOURCES = (ROOT / "services" / "embedder", ROOT / "libs" / "common" / "models.py")


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    question: str
    filename: str  # the PDF's upload name ("" for an unanswerable question)
    pages: frozenset[int]

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"


@dataclass
class Corpus:
    """The PDFs' chunks and vectors, the questions and theirs, and each page's kind."""

    chunks: list[Chunk]
    vectors: np.ndarray
    questions: list[Question]
    question_vectors: np.ndarray
    page_kinds: dict[tuple[str, int], str]


def available() -> bool:
    pdfs = json.loads((PDFQA / "pdfs.json").read_text(encoding="utf-8"))
    return all(Path(d["path"]).is_file() for d in pdfs)


def load_questions() -> list[Question]:
    pdfs = {d["id"]: d for d in json.loads((PDFQA / "pdfs.json").read_text(encoding="utf-8"))}
    found = []
    for line in (PDFQA / "dev.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            filename = pdfs[q["pdf"]]["filename"] if q.get("pdf") in pdfs else ""
            found.append(Question(q["id"], q["kind"], q["question"], filename, frozenset(q.get("pages", []))))
    return found


def pdf_bytes(entry: dict[str, Any]) -> bytes:
    """One PDF as score.py uploads it (decompressed when Debian ships it gzipped)."""
    raw = Path(entry["path"]).read_bytes()
    return gzip.decompress(raw) if entry["path"].endswith(".gz") else raw


def _source_digest() -> str:
    digest = hashlib.sha256()
    for root in PARSE_SOURCES:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def parse_pdfs(embedder: Embedder) -> tuple[list[Chunk], dict[tuple[str, int], str]]:
    """Every PDF's chunks as the embedder makes them, and each page's kind."""
    settings = EmbedderSettings()
    spec = ChunkSpec.for_backend(settings, embedder)
    limits = ParseLimits.from_settings(settings)
    pdfs = json.loads((PDFQA / "pdfs.json").read_text(encoding="utf-8"))
    key = hashlib.sha256(
        json.dumps([_source_digest(), repr(spec), repr(limits), [d["sha256"] for d in pdfs]]).encode()
    ).hexdigest()[:16]
    path = CACHE / f"parsed-{key}.pickle"
    if path.is_file():
        cached: tuple[list[Chunk], dict[tuple[str, int], str]] = pickle.loads(path.read_bytes())
        return cached
    chunks: list[Chunk] = []
    kinds: dict[tuple[str, int], str] = {}
    for entry in pdfs:
        data, filename = pdf_bytes(entry), entry["filename"]
        parsed = parse_and_chunk(ParseJob(filename, spec, limits), data)
        chunks += [Chunk.model_validate(c) for c in parsed.chunk_dicts(entry["id"], filename)]
        pages = parse_document(filename, data, limits.max_pages, max_chars=limits.max_chars)
        kinds |= {(filename, page.number): getattr(page, "kind", "body") for page in pages}
        print(f"  parsed {filename}: {parsed.pages} pages, {len(chunks)} chunks so far", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps((chunks, kinds)))
    return chunks, kinds


def embedded_texts(chunks: Sequence[Chunk]) -> list[str]:
    """What the embedder's handler gives the model for each chunk."""
    return [embedded_text(c.text, c.context) for c in chunks]


def load_corpus(embedder: Embedder) -> Corpus:
    chunks, kinds = parse_pdfs(embedder)
    vectors = embed_cached(embedder, embedded_texts(chunks), "pdfqa-chunks")
    questions = load_questions()
    qvectors = embed_cached(embedder, [q.question for q in questions], "pdfqa-questions")
    return Corpus(chunks, vectors, questions, qvectors, kinds)


def index(store: EdgeStore, name: str, corpus: Corpus, bm25: Bm25) -> str:
    """The corpus in a fresh collection of ``store``, with ``bm25``'s sparse vectors."""
    store.delete_collection(name)
    store.ensure_collection(name, corpus.vectors.shape[1])
    for start in range(0, len(corpus.chunks), 256):
        part = corpus.chunks[start : start + 256]
        sparse = [bm25.document(sparse_text(c)) for c in part]
        store.upsert(name, part, corpus.vectors[start : start + 256], sparse)
    return name


def search_all(corpus: Corpus, top_k: int = TOP_K) -> dict[str, list[Hit]]:
    """Each question's top ``top_k`` hits, searched as the retriever's handler searches
    (``RetrieverSettings()``'s BM25 and fusion) in a fresh in-memory index of the corpus."""
    settings = RetrieverSettings()
    bm25, fusion = build_bm25(settings), build_fusion(settings)
    found: dict[str, list[Hit]] = {}
    with tempfile.TemporaryDirectory(prefix="pdfqa-eval-") as tmp:
        store = EdgeStore(Path(tmp), dim_default=int(corpus.vectors.shape[1]), optimize=False)
        try:
            collection = index(store, "pdfqa", corpus, bm25)
            for q, vector in zip(corpus.questions, corpus.question_vectors, strict=True):
                sparse = bm25.query(q.question)
                found[q.id] = store.search(collection, vector, top_k, sparse=sparse, fusion=fusion)
        finally:
            store.close()
    return found


def running_lines(chunks: Sequence[Chunk]) -> dict[str, set[str]]:
    """Per file: the lines (digits dropped, spaces collapsed) found in chunks on at least
    half of its pages: running headers and footers that reached the chunks' text."""
    pages: dict[str, dict[str, set[int]]] = {}
    count: dict[str, set[int]] = {}
    for c in chunks:
        count.setdefault(c.filename, set()).add(c.page)
        for line in c.text.splitlines():
            key = _line_key(line)
            if len(key) >= 8:
                pages.setdefault(c.filename, {}).setdefault(key, set()).add(c.page)
    return {
        name: {key for key, found in lines.items() if len(found) * 2 >= len(count[name]) >= 4}
        for name, lines in pages.items()
    }


def _line_key(line: str) -> str:
    return " ".join("".join(ch for ch in line if not ch.isdigit()).split()).casefold()


def page_rank(hits: Sequence[Hit], question: Question, top_k: int = TOP_K) -> int | None:
    """The 1-based rank of the first hit on the question's PDF and an acceptable page (score.py)."""
    for rank, hit in enumerate(hits[:top_k], start=1):
        if hit.filename.casefold() == question.filename.casefold() and hit.page in question.pages:
            return rank
    return None


def summarize(ranks: dict[str, int | None], questions: Sequence[Question]) -> dict[str, dict[str, float]]:
    """Per kind and for all: n, Recall@1/@5/@10 and MRR@10, as score.py's summarize_search."""
    kinds: dict[str, list[int | None]] = {}
    for q in questions:
        if q.id in ranks:
            kinds.setdefault(q.kind, []).append(ranks[q.id])
            kinds.setdefault("ALL", []).append(ranks[q.id])
    out = {}
    for kind, found in sorted(kinds.items(), key=lambda kv: (kv[0] == "ALL", kv[0])):
        n = len(found)
        out[kind] = {"n": n} | {
            f"recall@{k}": sum(1 for r in found if r and r <= k) / n for k in (1, 5, TOP_K)
        }
        out[kind]["mrr@10"] = sum(1.0 / r for r in found if r) / n
    return out


def table(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| kind | n | R@1 | R@5 | R@10 | MRR |", "|---|---|---|---|---|---|"]
    for kind, r in summary.items():
        figures = " | ".join(f"{r[m]:.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr@10"))
        lines.append(f"| {kind} | {r['n']:.0f} | {figures} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the figures and every question's rank to this file")
    args = parser.parse_args(argv)
    if not available():
        print(f"the pdf-qa PDFs are not installed (sh {PDFQA}/install.sh as root)", file=sys.stderr)
        return 2
    embedder = build_embedder(EmbedderSettings())
    corpus = load_corpus(embedder)
    settings = RetrieverSettings()
    bm25, fusion = build_bm25(settings), build_fusion(settings)
    print(
        f"{len(corpus.chunks)} chunks; fusion {fusion}; BM25 k1 {bm25.k1} b {bm25.b} avgdl {bm25.avgdl} "
        f"tokenizer {getattr(bm25, 'tokenizer', 'words')}"
    )
    ranks: dict[str, int | None] = {}
    top_kinds: list[str] = []
    running = running_lines(corpus.chunks)
    with_running = 0
    best_relevance: dict[str, float] = {}
    searched = search_all(corpus)
    for q in corpus.questions:
        hits = searched[q.id]
        best_relevance[q.id] = max((getattr(h, "relevance", None) or 0.0 for h in hits), default=0.0)
        if q.answerable:
            ranks[q.id] = page_rank(hits, q)
            if hits:
                top_kinds.append(corpus.page_kinds.get((hits[0].filename, hits[0].page), "body"))
                lines = {_line_key(line) for line in hits[0].text.splitlines()}
                with_running += bool(lines & running.get(hits[0].filename, set()))
    summary = summarize(ranks, corpus.questions)
    print("\n" + table(summary))
    off = sum(1 for k in top_kinds if k != "body")
    print(f"\nfirst hit on a contents or index page: {off} of {len(top_kinds)} answerable questions")
    print(
        f"first hit holding a running header or footer line: {with_running} of {len(top_kinds)}; "
        f"such lines: {sum(len(v) for v in running.values())} "
        f"in {sum(1 for v in running.values() if v)} files"
    )
    answerable = [best_relevance[q.id] for q in corpus.questions if q.answerable]
    unanswerable = [best_relevance[q.id] for q in corpus.questions if not q.answerable]
    print(
        f"best relevance: answerable median {statistics.median(answerable):.3f}, "
        f"unanswerable {', '.join(f'{r:.3f}' for r in sorted(unanswerable))}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"summary": summary, "ranks": ranks, "best_relevance": best_relevance}, indent=1),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
