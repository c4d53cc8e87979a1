"""The int8 ONNX model against the fp32 sentence-transformers reference on real texts.

SciFact (``../shared/data/scifact-subset`` beside the checkout): 2,101 abstracts and
the 188 claims judged against them. Every vector the int8 model gives must be close
to the reference's, and dense retrieval with it must rank as well (nDCG@10).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from services.embedder.backends import LocalEmbedder
from services.embedder.onnx_embedder import OnnxEmbedder

ROOT = Path(__file__).resolve().parents[3]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact-subset"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SCIFACT / "corpus.jsonl").is_file(),
        reason=f"the SciFact subset is not at {SCIFACT} (shared/data beside the checkout)",
    ),
    # Both models embed every abstract once per module (minutes on two busy cores).
    pytest.mark.timeout(1800),
]

MIN_COSINE = 0.98
MAX_NDCG_LOSS = 0.01


@dataclass(frozen=True)
class SciFact:
    doc_ids: list[str]
    abstracts: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Vectors:
    abstracts: np.ndarray
    queries: np.ndarray


@pytest.fixture(scope="module")
def scifact() -> SciFact:
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines() if line]
    claims = {
        q["_id"]: q["text"]
        for q in (json.loads(line) for line in (SCIFACT / "queries.jsonl").read_text().splitlines() if line)
    }
    qrels: dict[str, dict[str, int]] = {}
    for path in sorted((SCIFACT / "qrels").glob("*.tsv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    query_ids = sorted(q for q in qrels if q in claims)
    return SciFact(
        doc_ids=[d["_id"] for d in corpus],
        abstracts=[(d.get("title", "") + " " + d["text"]).strip() for d in corpus],
        query_ids=query_ids,
        queries=[claims[q] for q in query_ids],
        qrels=qrels,
    )


@pytest.fixture(scope="module")
def fp32(scifact: SciFact) -> Vectors:
    model = LocalEmbedder(batch_size=64)
    return Vectors(model.embed(scifact.abstracts), model.embed(scifact.queries))


@pytest.fixture(scope="module")
def int8(scifact: SciFact, onnx_model: Path) -> Vectors:
    model = OnnxEmbedder(onnx_model)
    return Vectors(model.embed(scifact.abstracts), model.embed(scifact.queries))


def ndcg_at_10(data: SciFact, vectors: Vectors) -> float:
    """Mean nDCG@10 over the judged claims, brute-force cosine over every abstract."""
    scores = vectors.queries @ vectors.abstracts.T
    total = 0.0
    for row, qid in enumerate(data.query_ids):
        top = np.argsort(-scores[row], kind="stable")[:10]
        gains = data.qrels[qid]
        dcg = sum(gains.get(data.doc_ids[j], 0) / np.log2(rank + 2) for rank, j in enumerate(top))
        ideal = sorted(gains.values(), reverse=True)[:10]
        idcg = sum(g / np.log2(rank + 2) for rank, g in enumerate(ideal))
        total += dcg / idcg
    return total / len(data.query_ids)


def test_the_subset_is_what_the_tests_assume(scifact: SciFact) -> None:
    assert len(scifact.abstracts) == 2101
    assert len(scifact.query_ids) == 188


def test_every_int8_vector_is_close_to_fp32(fp32: Vectors, int8: Vectors) -> None:
    for kind in ("abstracts", "queries"):
        a, b = getattr(fp32, kind), getattr(int8, kind)
        cosines = (a * b).sum(axis=1)
        worst = int(np.argmin(cosines))
        assert cosines.min() >= MIN_COSINE, (
            f"{kind}: cosine min {cosines.min():.4f} (item {worst}), mean {cosines.mean():.4f}"
        )


def test_int8_retrieval_ranks_as_well_as_fp32(scifact: SciFact, fp32: Vectors, int8: Vectors) -> None:
    reference = ndcg_at_10(scifact, fp32)
    quantised = ndcg_at_10(scifact, int8)
    # The dataset's README: dense all-MiniLM-L6-v2, exact cosine, whole abstract: 0.775.
    assert reference == pytest.approx(0.775, abs=0.01)
    assert abs(quantised - reference) <= MAX_NDCG_LOSS, f"nDCG@10 fp32 {reference:.4f}, int8 {quantised:.4f}"
