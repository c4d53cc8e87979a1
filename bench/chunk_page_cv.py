"""Issue 15: chunk size and page evidence, cross-validated over SciFact and pdf-qa (5 folds, seed 15).

    PYTHONPATH=. .venv/bin/python -m bench.chunk_page_cv [--sizes 200:32,128:24,256:40]

Per chunk size: both corpora chunked, embedded and indexed as bench/retrieval_cv.py does
(today's BM25 and fusion settings); each query's fused ranking (fusion.weighted_rrf over
all candidates) is then optionally re-scored by page evidence:
    score' = fused score + share * (sum of the fused scores of the other hits on the same
             page of the same document), within a window (the top_k, or every candidate),
and scored as retrieval_cv scores (SciFact nDCG@10 over the top 100 reduced to abstracts;
pdf-qa reciprocal rank of the first hit on an acceptable page in the top 10).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from bench import cv, retrieval_cv
from bench.calibrate import judges
from bench.retrieval_cv import held_out_cells, read_rankings, summary
from libs.common.settings import EmbedderSettings, RetrieverSettings
from services.embedder.backends import build_embedder
from services.retriever.edge_store import EdgeStore
from services.retriever.fusion import Fusion, weighted_rrf

SHARES = (0.0, 0.1, 0.25, 0.5, 1.0)
WINDOWS = ("top_k", "pool")


def page_rescore(
    fused: list[tuple[str, float]], page_of: Mapping[str, Hashable], share: float, agg: str = "sum"
) -> list[str]:
    if share == 0.0:
        return [p for p, _ in fused]
    on_page: dict[Hashable, list[float]] = defaultdict(list)
    for p, s in fused:
        on_page[page_of[p]].append(s)

    def others(i: int) -> float:
        scores = list(on_page[page_of[fused[i][0]]])
        scores.remove(fused[i][1])
        if not scores:
            return 0.0
        return sum(scores) if agg == "sum" else max(scores)

    order = sorted(range(len(fused)), key=lambda i: (-(fused[i][1] + share * others(i)), i))
    return [fused[i][0] for i in order]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200:32,128:24,256:40")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--json")
    args = ap.parse_args()
    now = RetrieverSettings()
    today = (now.bm25_tokenizer, now.bm25_k1, now.bm25_b, now.bm25_avgdl)
    fusion = Fusion(dense_weight=now.hybrid_dense_weight, k=now.rrf_k, candidates=now.hybrid_candidates)
    table: dict[Any, dict[str, float]] = {}
    hit1: dict[Hashable, dict[str, float]] = {}
    counts = {}
    for pair in args.sizes.split(","):
        size, overlap = pair.split(":")
        os.environ["DOCUMIND_CHUNK_SIZE_TOKENS"] = size
        os.environ["DOCUMIND_CHUNK_OVERLAP_TOKENS"] = overlap
        embedder = build_embedder(EmbedderSettings())
        sci, qrels = retrieval_cv.scifact(embedder)
        pdf, questions = retrieval_cv.pdfqa(embedder)
        counts[pair] = (len(sci.chunks), len(pdf.chunks))
        with tempfile.TemporaryDirectory(prefix="chunk-page-cv-") as tmp:
            store = EdgeStore(Path(tmp), dim_default=embedder.dim, optimize=False)
            try:
                ranks = {d.name: read_rankings(store, d, [today]) for d in (sci, pdf)}
            finally:
                store.close()
        judge = judges(qrels, questions)
        for share in SHARES:
            for window in [w + a for w in WINDOWS for a in ("", "-max")]:
                if share == 0.0 and window != "top_k":
                    continue
                setting = (pair, share, window)
                table[setting], hit1[setting] = {}, {}
                for d in (sci, pdf):
                    page_of = {pid: (c.document_id, c.page) for pid, c in d.by_id.items()}
                    for qid in d.queries:
                        r = ranks[d.name][qid]
                        limit = fusion.limit(d.top_k)
                        fused = weighted_rrf(
                            (r.dense_ids[:limit], r.sparse[today][:limit]),
                            (fusion.dense_weight, 1 - fusion.dense_weight),
                            fusion.k,
                            r.cosines,
                        )
                        if window.startswith("top_k"):
                            fused = fused[: d.top_k]
                        agg = "max" if window.endswith("-max") else "sum"
                        ids = page_rescore(fused, page_of, share, agg)[: d.top_k]
                        scored = judge[d.name](qid, [d.by_id[i] for i in ids])
                        if scored is not None:
                            table[setting][qid], hit1[setting][qid] = scored
        print(f"{pair}: chunks scifact {counts[pair][0]}, pdfqa {counts[pair][1]}", flush=True)
    base = (args.sizes.split(",")[0], 0.0, "top_k")
    groups = {q: q.split(":")[0] for q in table[base]}
    print(
        "\n| settings tried | picked on all | folds agreeing "
        "| held out: SciFact nDCG@10 | pdf-qa MRR@10 | pdf-qa R@1 |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| today {base} | | | "
        + held_out_cells([base] * args.folds, table, hit1, groups, k=args.folds, seed=args.seed)
        + " |"
    )
    families = {
        "chunk size": [s for s in table if s[1] == 0.0],
        "page evidence (share, window)": [s for s in table if s[0] == base[0]],
        "both jointly": list(table),
    }
    out: dict[str, Any] = {"counts": counts, "all": {str(s): summary(s, table, hit1, groups) for s in table}}
    for name, chosen in families.items():
        rep = cv.cross_validate({s: table[s] for s in chosen}, groups, args.folds, args.seed)
        cells = held_out_cells(
            [f.chosen for f in rep.folds], table, hit1, groups, k=args.folds, seed=args.seed
        )
        print(
            f"| {name}: {len(chosen)} | {rep.final} | {rep.agreement} of {args.folds} | {cells} |", flush=True
        )
        out[name] = {"final": rep.final, "folds": [f.chosen for f in rep.folds], "held_out": cells}
    # Each fixed setting held out over the same folds (its per-fold means), for reference.
    print(
        "\n| fixed setting | SciFact nDCG@10 | pdf-qa MRR@10 | pdf-qa R@1 "
        "| all queries: SciFact / MRR / R@1 |"
    )
    print("|---|---|---|---|---|")
    for s in table:
        a = summary(s, table, hit1, groups)
        print(
            f"| {s} | "
            + held_out_cells([s] * args.folds, table, hit1, groups, k=args.folds, seed=args.seed)
            + f" | {a['scifact_ndcg10']:.4f} / {a['pdfqa_mrr10']:.4f} / {a['pdfqa_r1']:.4f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
