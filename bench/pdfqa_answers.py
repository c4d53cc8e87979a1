"""pdf-qa answers in process: the chat figures of ``score.py``, without services.

    .venv/bin/python -m bench.pdfqa_answers [--json FILE] [--show]

The corpus, the index and each question's search are ``bench.pdfqa_eval``'s (the
embedder's parse and chunks, its model, the retriever's BM25 and fusion from
``RetrieverSettings()``); a chat's hits are the top ``default_top_k`` (the gateway's
default) of that search, and its answer is composed by the answerer the generator builds
from ``GeneratorSettings()`` (extractive without an LLM key). Each answer is scored by
pdf-qa's own ``score.py`` (``score_chat``, ``summarize_chat``), in seconds once the
parse and embedding caches are warm. The figures are ``bench/pdf_qa.py``'s against the
running stack up to the order of close hits: here the dense search is exact, while the
stack's store searches an HNSW graph once it has optimised (at 9214ae9 both gave 20 of
36 answerable right; one unanswerable question, scoring at the threshold, differed).

With ``--json`` it also writes each question's evidence features (the draft's coverage
and relevance, before the ``min_evidence`` threshold): what ``bench/abstention_cv.py``
chooses the threshold from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.pdfqa_eval import PDFQA, available, load_corpus, search_all
from libs.common.models import Hit
from libs.common.settings import EmbedderSettings, GatewaySettings, GeneratorSettings
from services.embedder.backends import build_embedder
from services.generator.answerers import build_answerer
from services.generator.extractive import ExtractiveAnswerer


def _score_module() -> Any:
    """pdf-qa's score.py (beside its questions), imported as a module."""
    sys.path.insert(0, str(PDFQA))
    try:
        import score
    finally:
        sys.path.remove(str(PDFQA))
    return score


def answer_rows(hits: dict[str, list[Hit]], answerer: Any) -> list[dict[str, Any]]:
    """score.py's record of each dev question's answer, with its evidence features."""
    score = _score_module()
    pdfs = {d["id"]: d for d in json.loads((PDFQA / "pdfs.json").read_text(encoding="utf-8"))}
    no_answer = re.compile(score.DEFAULT_NO_ANSWER, re.IGNORECASE)
    rows = []
    for q in score.load_jsonl(str(PDFQA / "dev.jsonl")):
        answer = answerer.compose(q["question"], hits[q["id"]])
        filename = pdfs[q["pdf"]]["filename"] if q.get("pdf") in pdfs else ""
        row = score.score_chat(q, "done", answer.model_dump(), no_answer, filename)
        extractive = isinstance(answerer, ExtractiveAnswerer)
        draft = answerer.draft(q["question"], hits[q["id"]]) if extractive else None
        row["coverage"] = None if draft is None else draft.support.coverage
        row["relevance"] = None if draft is None else draft.support.relevance
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the summary and every question's record to this file")
    parser.add_argument("--show", action="store_true", help="print each question's answer and citations")
    args = parser.parse_args(argv)
    if not available():
        print(f"the pdf-qa PDFs are not installed (sh {PDFQA}/install.sh as root)", file=sys.stderr)
        return 2
    corpus = load_corpus(build_embedder(EmbedderSettings()))
    top_k = GatewaySettings().default_top_k
    answerer = build_answerer(GeneratorSettings())
    rows = answer_rows(search_all(corpus, top_k), answerer)
    score = _score_module()
    summary = score.summarize_chat(rows)
    print(f"answerer {type(answerer).__name__}, top_k {top_k}")
    score.print_chat(summary)
    if args.show:
        for r in rows:
            verdict = r.get("both_correct", r.get("unanswerable_correct"))
            cited = [(c["filename"], c["page"]) for c in r["citations"]]
            verdict_word = "ok" if verdict else "WRONG"
            print(f"\n{r['id']} ({r['kind']}) {verdict_word} cited {cited} missing {r.get('missing')}")
            print(f"  {r['answer'][:400]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
