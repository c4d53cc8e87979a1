"""The SciFact data set of the benchmarks: the BEIR-layout subset in ``../shared/data/scifact-subset``.

:func:`load_scifact` reads its documents, judged queries and qrels (or a smaller
part of it for smoke runs: judged documents first, then others).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact-subset"


@dataclass
class Corpus:
    docs: dict[str, str]  # corpus id -> title + abstract, in file order
    queries: dict[str, str]  # judged queries whose relevant documents are all in docs
    qrels: dict[str, dict[str, int]]  # query id -> {corpus id: relevance}

    @staticmethod
    def filename(doc_id: str) -> str:
        """The name a document is uploaded under: search hits map back to corpus ids by it."""
        return f"{doc_id}.txt"

    @staticmethod
    def doc_id(filename: str) -> str:
        return filename.removesuffix(".txt")


def doc_text(row: dict[str, str]) -> str:
    title, text = row.get("title", "").strip(), row.get("text", "").strip()
    return f"{title}\n\n{text}" if title else text


def load_scifact(limit: int | None = None, root: Path = SCIFACT) -> Corpus:
    """The corpus, its queries and qrels; with ``limit``, that many documents.

    A limited corpus takes the relevant documents of whole queries (in qrels
    order) for up to half of it and fills the rest with other documents in file
    order, so that a smoke run still has judged queries with distractors.
    """
    with (root / "corpus.jsonl").open() as fh:
        texts = {row["_id"]: doc_text(row) for row in map(json.loads, fh)}
    with (root / "queries.jsonl").open() as fh:
        queries = {row["_id"]: row["text"] for row in map(json.loads, fh)}
    qrels: dict[str, dict[str, int]] = {}
    for path in sorted((root / "qrels").glob("*.tsv")):
        for line in path.read_text().splitlines()[1:]:
            qid, doc_id, score = line.split("\t")
            if int(score) > 0:
                qrels.setdefault(qid, {})[doc_id] = int(score)
    if limit is not None and limit < len(texts):
        chosen: dict[str, None] = {}
        for rel in qrels.values():
            new = [d for d in rel if d not in chosen and d in texts]
            if len(chosen) + len(new) <= limit // 2:
                chosen.update(dict.fromkeys(new))
        for doc_id in texts:
            if len(chosen) >= limit:
                break
            chosen.setdefault(doc_id)
        texts = {d: t for d, t in texts.items() if d in chosen}
    judged = {q: rel for q, rel in qrels.items() if q in queries and all(d in texts for d in rel)}
    return Corpus(texts, {q: queries[q] for q in judged}, judged)
