"""Probe (issue 15): query-likelihood re-ranking (UPR) with SmolLM2-135M, cross-validated.

    .venv/bin/python -m bench.upr_probe [--score pdfqa:plain+chat:20 scifact:plain+chat:10] [--answers]

UPR (Sachan et al. 2022, "Improving Passage Retrieval with Zero-Shot Question
Generation") scores a candidate passage by the mean log-probability of the question's
tokens after a prompt holding the passage ("Passage: <text>\\nPlease write a question
based on this passage.\\nQuestion:"). Here the passage is what the embedder embeds
(the chunk's context line, a newline, its text); the model is the only LM on the
machine, SmolLM2-135M-Instruct (GGUF Q4_1, llama.cpp, one thread). Variants: ``plain``
(that prompt as raw text) and ``chat`` (the same request in the instruct model's chat
template, the question as the assistant's reply).

The candidates are today's fused ranking (``bench.retrieval_cv``: dense + BM25 with
``RetrieverSettings()``; pdf-qa top 10 or 20, SciFact top 10 of its 100 chunks, the
rest kept in place). ``--score SET:VARIANTS:DEPTH`` scores every (question, candidate)
pair (queries in a seeded random order, each through every variant) and caches the
score and its CPU time under ``/tmp/h3/`` (nothing in the repo); without ``--score``
only cached scores are used: pdf-qa must be complete for a variant to be reported, and
SciFact is reported on the queries every such variant has scored (a random subset when
the scoring was stopped early; today's figure is printed on that subset and on all).
A pair's CPU is ``time.process_time`` of its evaluation from scratch (no passage shared
between questions): what a reranker would spend on it. The report's settings: today; UPR
alone on the top k; UPR's rank merged with today's by RRF (weight, k); and a convex mix
of the min-max normalised fused score and UPR score (weight). ``bench/cv.py`` picks a
setting per fold on the other folds (5 folds, seed 15, objective the mean of SciFact
nDCG@10 and pdf-qa MRR@10) and scores it held out; per kind, each pdf-qa question is
scored by the setting its fold picked. ``--answers``: the extractive answers
(``bench.pdfqa_answers``) on the top 5 of today, of the setting picked on all queries
and of UPR alone's pick (a local re-ordering of ``pdfqa_eval.search_all``'s hits).
No production code is changed. The scoring, its cache and the candidates are in
``bench/upr_scoring.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cv, pdfqa_eval, retrieval_cv, tune_retrieval
from bench.upr_scoring import (
    MAX_DEPTH,
    VARIANTS,
    Candidates,
    ScoreCache,
    complete,
    load_sets,
    rerank,
    score_set,
    upr_scores,
)
from libs.common.settings import EmbedderSettings
from services.embedder.backends import build_embedder

RRF_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
RRF_KS = (5, 20, 60)
MIX_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
Setting = tuple[
    Any, ...
]  # ("today",), ("upr", variant, depth), ("rrf", ..., weight, k), ("mix", ..., weight)
DEPTHS = (10, 20)  # pdf-qa's re-ranking depths
SCIFACT_DEPTH = 10  # SciFact is re-ranked on its top 10 chunks whatever the pdf-qa depth


def settings_for(variant: str, depth: int) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = [("upr", variant, depth)]
    found += [("rrf", variant, depth, w, k) for w in RRF_WEIGHTS for k in RRF_KS]
    found += [("mix", variant, depth, w) for w in MIX_WEIGHTS]
    return found


@dataclass
class Table:
    """Setting -> query -> figure (nDCG@10 or reciprocal rank) and hit@1; the SciFact queries
    in it (those scored by every variant); the variants complete on pdf-qa."""

    main: dict[Setting, dict[str, float]]
    hit1: dict[Setting, dict[str, float]]
    scifact: list[str]
    variants: list[str]
    caches: dict[str, ScoreCache]


def build_table(
    sets: dict[str, retrieval_cv.Dataset], cands: dict[str, dict[str, Candidates]], judge: Any
) -> Table:
    """Every setting whose pairs are all cached: pdf-qa whole, SciFact on the queries every
    variant has scored."""
    caches = {v: ScoreCache(v) for v in VARIANTS}
    variants = [
        v for v in VARIANTS if all(complete(c, caches[v], MAX_DEPTH) for c in cands["pdfqa"].values())
    ]
    sci = [
        q for q, c in cands["scifact"].items() if all(complete(c, caches[v], SCIFACT_DEPTH) for v in variants)
    ]
    queries = {"scifact": sci, "pdfqa": list(cands["pdfqa"])}
    plans: list[tuple[Any, ...]] = [("today",)]
    for variant in variants:
        for depth in DEPTHS:
            plans += settings_for(variant, depth)
    table = Table({}, {}, sci, variants, caches)
    for setting in plans:
        table.main[setting], table.hit1[setting] = {}, {}
        for name, data in sets.items():
            for qid in queries[name]:
                c = cands[name][qid]
                upr = None
                if setting[0] != "today":
                    depth = min(setting[2], SCIFACT_DEPTH) if name == "scifact" else setting[2]
                    upr = upr_scores(c, caches[setting[1]], depth)
                scored = judge[name](qid, [data.by_id[i] for i in rerank(setting, c, upr)])
                if scored is not None:
                    table.main[setting][qid], table.hit1[setting][qid] = scored
    return table


def cpu_ms(cands: dict[str, dict[str, Candidates]], table: Table) -> dict[str, tuple[float, int]]:
    """Mean CPU ms per question of scoring its top k (and the questions measured), per set,
    variant and depth: the sum of its pairs' ``process_time``, each pair evaluated afresh."""
    found = {}
    for variant in table.variants:
        cache = table.caches[variant]
        for name, depths in (("pdfqa", DEPTHS), ("scifact", (SCIFACT_DEPTH,))):
            for depth in depths:
                per_q = [
                    1000 * sum(cache.found[ScoreCache.key(c.question, p)][1] for p in c.passages[:depth])
                    for c in cands[name].values()
                    if complete(c, cache, depth)
                ]
                if per_q:
                    found[f"{name} {variant} top {depth}"] = (statistics.fmean(per_q), len(per_q))
    return found


def as_setting(chosen: Hashable) -> Setting:
    """A setting as ``cv`` hands it back."""
    if not isinstance(chosen, tuple):
        raise TypeError(f"not a setting: {chosen!r}")
    return chosen


def held_out(report: cv.Report, table: Table, folds: list[frozenset[str]], groups: dict[str, str]) -> str:
    """Mean ± sd over folds of SciFact nDCG@10, pdf-qa MRR@10 and R@1, each fold by its pick."""
    sci, mrr, first = [], [], []
    for held, fold in zip(folds, report.folds, strict=True):
        means = cv.group_means(table.main[as_setting(fold.chosen)], groups, sorted(held))
        sci.append(means["scifact"])
        mrr.append(means["pdfqa"])
        first.append(cv.group_means(table.hit1[as_setting(fold.chosen)], groups, sorted(held))["pdfqa"])
    return " | ".join(f"{statistics.fmean(v):.3f} ± {statistics.pstdev(v):.3f}" for v in (sci, mrr, first))


def held_out_ranks(report: cv.Report, table: Table, folds: list[frozenset[str]]) -> dict[str, int | None]:
    """Each pdf-qa question's rank (None past 10) under the setting its fold picked."""
    ranks: dict[str, int | None] = {}
    for held, fold in zip(folds, report.folds, strict=True):
        for qid in held:
            if qid.startswith("pdfqa:") and qid in table.main[as_setting(fold.chosen)]:
                rr = table.main[as_setting(fold.chosen)][qid]
                ranks[qid.split(":", 1)[1]] = round(1 / rr) if rr else None
    return ranks


def families(table: Table) -> dict[str, list[Setting]]:
    found: dict[str, list[Setting]] = {"today": [("today",)]}
    for depth in DEPTHS:
        found[f"UPR alone, top {depth} (variant by CV)"] = [("upr", v, depth) for v in table.variants]
        found[f"RRF with today's rank, top {depth}"] = [
            s for s in table.main if s[0] == "rrf" and s[2] == depth
        ]
        found[f"convex mix of normalised scores, top {depth}"] = [
            s for s in table.main if s[0] == "mix" and s[2] == depth
        ]
    found["UPR alone, variant and depth by CV"] = [s for s in table.main if s[0] == "upr"]
    found["everything (today, UPR alone, RRF, mix; depth and variant too)"] = list(table.main)
    return found


def answers(setting: Setting, cands: dict[str, Candidates], caches: dict[str, ScoreCache]) -> dict[str, Any]:
    """score.py's chat summary of the extractive answers on ``setting``'s top 5 (the gateway's
    ``default_top_k``), hits re-ordered from ``pdfqa_eval.search_all``'s top 20."""
    from bench.pdfqa_answers import _score_module, answer_rows
    from libs.common.settings import GatewaySettings, GeneratorSettings
    from services.generator.answerers import build_answerer
    from services.retriever.store import point_id

    corpus = pdfqa_eval.load_corpus(build_embedder(EmbedderSettings()))
    searched = pdfqa_eval.search_all(corpus, MAX_DEPTH)
    top_k = GatewaySettings().default_top_k
    hits, differ = {}, 0
    for qid, found in searched.items():
        c = cands[f"pdfqa:{qid}"]
        by_id = {point_id(h.document_id, h.chunk_index): h for h in found}
        differ += [point_id(h.document_id, h.chunk_index) for h in found] != c.ids
        upr = None if setting[0] == "today" else upr_scores(c, caches[setting[1]], setting[2])
        hits[qid] = [by_id[i] for i in rerank(setting, c, upr) if i in by_id][:top_k]
    if differ:
        print(f"  note: {differ} questions' search order differs from the CV's candidates")
    summary: dict[str, Any] = _score_module().summarize_chat(
        answer_rows(hits, build_answerer(GeneratorSettings()))
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--score", nargs="*", default=[], help="SET:VARIANTS:DEPTH to score first (e.g. pdfqa:plain+chat:20)"
    )
    parser.add_argument(
        "--answers", action="store_true", help="also the extractive answers on the picked setting"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (tune_retrieval.SCIFACT / "corpus.jsonl").is_file() or not pdfqa_eval.available():
        print("needs ../shared/data/scifact-subset and the installed pdf-qa PDFs", file=sys.stderr)
        return 2
    sets, cands, extra = load_sets()
    for job in args.score:
        name, variants, depth = job.split(":")
        print(f"scoring {name} {variants} top {depth}", flush=True)
        score_set(cands[name], variants.split("+"), int(depth))
    report(sets, cands, extra, args)
    return 0


def report(
    sets: dict[str, retrieval_cv.Dataset],
    cands: dict[str, dict[str, Candidates]],
    extra: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    table = build_table(sets, cands, extra["judge"])
    if not table.variants:
        print("no variant has scored every pdf-qa question yet")
        return
    today = ("today",)
    groups = {q: q.split(":")[0] for q in table.main[today]}
    full_sci = statistics.fmean(
        extra["judge"]["scifact"](q, [sets["scifact"].by_id[i] for i in c.ids])[0]
        for q, c in cands["scifact"].items()
    )
    print(
        f"\nvariants {table.variants}; SciFact queries scored by all: {len(table.scifact)} of "
        f"{len(cands['scifact'])} (today's nDCG@10 on them "
        f"{cv.group_means(table.main[today], groups, table.scifact)['scifact']:.3f}, on all {full_sci:.3f})"
    )
    out: dict[str, Any] = {"variants": table.variants, "scifact_queries": len(table.scifact)}

    print("\n### On all queries (no parameter: UPR alone per variant and depth)\n")
    print("| setting | SciFact nDCG@10 | pdf-qa R@1 / R@5 / R@10 / MRR |\n|---|---|---|")
    questions = list(extra["questions"].values())
    for setting in [today] + [s for s in table.main if s[0] == "upr"]:
        ranks = {
            q.split(":", 1)[1]: round(1 / rr) if rr else None
            for q, rr in table.main[setting].items()
            if q.startswith("pdfqa:")
        }
        allq = pdfqa_eval.summarize(ranks, questions)["ALL"]
        sci = cv.group_means(table.main[setting], groups, sorted(groups))["scifact"]
        cells = " / ".join(f"{allq[m]:.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr@10"))
        print(f"| {setting} | {sci:.3f} | {cells} |")

    print("\nper query against today (UPR alone): better / worse / same")
    for setting in [s for s in table.main if s[0] == "upr"]:
        for name in ("pdfqa", "scifact"):
            diffs = [
                table.main[setting][q] - table.main[today][q] for q in table.main[today] if groups[q] == name
            ]
            print(
                f"- {setting} {name}: {sum(d > 1e-9 for d in diffs)} / {sum(d < -1e-9 for d in diffs)} / "
                f"{sum(abs(d) <= 1e-9 for d in diffs)}"
            )

    folds = cv.stratified_folds(groups, args.folds, args.seed)
    print(f"\n### Held out ({args.folds} folds, seed {args.seed}; mean ± sd over folds)\n")
    print(
        "| family | settings | picked on all | folds agreeing | SciFact nDCG@10 | pdf-qa MRR@10 | "
        "pdf-qa R@1 |"
    )
    print("|---|---|---|---|---|---|---|")
    reports = {}
    for family, members in families(table).items():
        chosen: dict[Hashable, dict[str, float]] = {s: table.main[s] for s in members}
        rep = cv.cross_validate(chosen, groups, args.folds, args.seed)
        reports[family] = rep
        cells = held_out(rep, table, folds, groups)
        print(
            f"| {family} | {len(members)} | {rep.final} | {rep.agreement} of {args.folds} | {cells} |",
            flush=True,
        )
        out[family] = {"final": rep.final, "folds": [f.chosen for f in rep.folds], "held_out": cells}

    for family in (
        "today",
        "UPR alone, variant and depth by CV",
        "everything (today, UPR alone, RRF, mix; depth and variant too)",
    ):
        ranks = held_out_ranks(reports[family], table, folds)
        print(f"\n#### pdf-qa per kind, held out: {family}\n")
        print(pdfqa_eval.table(pdfqa_eval.summarize(ranks, questions)))
        out[f"per kind: {family}"] = pdfqa_eval.summarize(ranks, questions)

    print("\n### CPU per question (process_time, one thread, each pair evaluated afresh)\n")
    for label, (ms, n) in cpu_ms(cands, table).items():
        print(f"- {label}: {ms:.0f} ms ({n} questions)")
        out[f"cpu {label}"] = ms

    if args.answers:
        best = as_setting(reports["everything (today, UPR alone, RRF, mix; depth and variant too)"].final)
        best_upr = as_setting(reports["UPR alone, variant and depth by CV"].final)
        for name, setting in (
            ("today", today),
            (f"picked on all: {best}", best),
            (f"UPR alone: {best_upr}", best_upr),
        ):
            o = answers(setting, cands["pdfqa"], table.caches)["overall"]
            print(
                f"\nanswers, {name}: both right {o['both_correct']} of {o['n']}, "
                f"answer {o['answer_correct']}, "
                f"page {o['page_cited']}, abstained {o['abstained']}; unanswerable abstained "
                f"{o['unanswerable_correct']} of {o['unanswerable_n']}",
                flush=True,
            )
            out[f"answers {name}"] = o
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
