"""Issue 15: answer quality on real PDFs (``../shared/data/pdf-qa``) against the embedded stack.

    .venv/bin/python -m bench.pdf_qa [--json FILE] [--keep]

The benchmark's own ``score.py`` does the work (loaded with importlib, never copied):
on a fresh :class:`bench.stack.BenchStack` it uploads the 10 PDFs (842 pages) into one
collection, one after another, each waited on until ready (the ingest time reported);
asks every question of ``dev.jsonl`` through ``POST /v1/chat``; then scores
``POST /v1/search`` on the same collection (``--skip-upload``). Printed per kind of
question: fact and page both right, answer right, page cited, wrong abstentions
(answerable questions answered "no answer"), unanswerable questions abstained on
correctly (no citations), and search page Recall@1/@5/@10 and MRR@10.

The PDFs come from Debian packages: ``sh ../shared/data/pdf-qa/install.sh`` as root
installs them and checks that each is the file the questions were written against
(page numbers depend on it). Without them this exits 2 and says so. The floor the
issue sets is held by ``tests/integration/test_pdf_qa.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import loadavg, markdown_table, run_context, sigterm_as_interrupt, write_json
from bench.stack import ROOT, BenchStack, use_bench_key

PDF_QA = ROOT.parent / "shared" / "data" / "pdf-qa"
INSTALL = "sh ../shared/data/pdf-qa/install.sh"
COLLECTION = "pdfqa"
TOP_K = 10  # score.py's default: R@10 and MRR@10
# /proc/cpuinfo flags that change how fast the embedder's int8 ONNX model runs.
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def not_installed(root: Path = PDF_QA) -> str | None:
    """Why the benchmark cannot run on this machine, or None when it can: every PDF is
    installed and byte-identical to the one the questions were written against (the
    check install.sh makes)."""
    if not (root / "score.py").is_file():
        return f"no pdf-qa benchmark at {root}"
    for pdf in json.loads((root / "pdfs.json").read_text()):
        path = Path(pdf["path"])
        if not path.is_file():
            return f"{path} is not installed; install the PDFs as root with: {INSTALL}"
        if hashlib.sha256(path.read_bytes()).hexdigest() != pdf["sha256_installed_file"]:
            return (
                f"{path} is not {pdf['package']} {pdf['version']}, the version the questions were "
                f"written against (page numbers differ); as root: {INSTALL}"
            )
    return None


def load_score(root: Path = PDF_QA) -> ModuleType:
    """The benchmark's ``score.py`` as a module."""
    spec = importlib.util.spec_from_file_location("pdf_qa_score", root / "score.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {root / 'score.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_score(score: ModuleType, argv: list[str]) -> None:
    """``score.py``'s command line, in this process; an exit with a message is an error."""
    try:
        status = score.main(argv)
    except SystemExit as exc:
        status = exc.code
    if status not in (0, None):
        raise RuntimeError(f"score.py stopped ({status}); its output is above")


def cpu() -> dict[str, Any]:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has (Linux only)."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            info.setdefault(name.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    return {"cpu": info.get("model name", "unknown"), "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def measure(url: str, api_key: str, workdir: Path) -> dict[str, Any]:
    """Upload, ask, search: every figure of one run against the stack at ``url``."""
    score = load_score()
    # One argument: a key may start with "-", which argparse would take for an option.
    base = [url, COLLECTION, str(PDF_QA / "dev.jsonl"), f"--api-key={api_key}"]
    started = time.perf_counter()
    run_score(score, [*base, "--upload-only"])
    ingest_s = time.perf_counter() - started
    client = score.Client(url, api_key)
    docs = client.request("GET", f"/v1/collections/{COLLECTION}/documents")["documents"]
    out: dict[str, Any] = {
        "ingest": {
            "pdfs": len(docs),
            "pages": sum(int(d["pages"] or 0) for d in docs),
            "chunks": sum(int(d["chunks"] or 0) for d in docs),
            "ready": sum(d["status"] == "ready" for d in docs),
            "seconds": round(ingest_s, 1),
        }
    }
    for kind, extra in (("answer", []), ("search", ["--search"])):
        path = workdir / f"{kind}.json"
        run_score(score, [*base, "--skip-upload", *extra, "--json-out", str(path)])
        found = json.loads(path.read_text())
        if found["errors"]:
            raise RuntimeError(f"{kind}: {found['errors']} request errors (see above)")
        out[kind] = {"summary": found["summary"], "per_question": found["per_question"]}
    # The answerer the generator chose: what the targets assume is "extractive".
    first = score.load_jsonl(str(PDF_QA / "dev.jsonl"))[0]
    _status, result, _s = score.ask(
        client, argparse.Namespace(collection=COLLECTION, job_timeout=60.0), first
    )
    out["answer_mode"] = result.get("mode", "?")
    out["headline"] = headline(out)
    return out


def headline(fig: dict[str, Any]) -> dict[str, float]:
    """The issue's figures, each a rate in [0, 1]."""
    overall = fig["answer"]["summary"]["overall"]
    rates, search = overall["rates"], fig["search"]["summary"]["ALL"]
    return {
        "answerable_both": rates["both_correct"],
        "answerable_answer": rates["answer_correct"],
        "answerable_page": rates["page_cited"],
        "wrong_abstentions": round(overall["abstained"] / overall["n"], 4),
        "unanswerable_abstained": rates["unanswerable_correct"],
        "search_r1": search["recall@1"],
        "search_r5": search["recall@5"],
        f"search_r{TOP_K}": search[f"recall@{TOP_K}"],
        "search_mrr": search[f"mrr@{TOP_K}"],
    }


def _pct(count: int, n: int) -> str:
    return f"{100 * count / n:.1f}% ({count})" if n else ""


def answer_table(summary: dict[str, Any]) -> str:
    """Answer mode, one row per kind of question, then the answerable and unanswerable totals."""

    def answerable(name: str, r: dict[str, Any], bold: str = "") -> list[object]:
        n = r["n"]
        both, wrong = _pct(r["both_correct"], n), _pct(r["abstained"], n)
        answer, page = _pct(r["answer_correct"], n), _pct(r["page_cited"], n)
        return [name, n, f"{bold}{both}{bold}", answer, page, f"{bold}{wrong}{bold}", ""]

    rows = [answerable(kind, r) for kind, r in summary["per_kind"].items() if kind != "unanswerable"]
    o = summary["overall"]
    rows.append(answerable("**answerable**", o, "**"))
    un = o["unanswerable_n"]
    rows.append(["**unanswerable**", un, "", "", "", "", f"**{_pct(o['unanswerable_correct'], un)}**"])
    header = ["kind", "n", "both", "answer", "page", "wrong abstentions", "abstained correctly"]
    return markdown_table(header, rows)


def search_table(summary: dict[str, Any]) -> str:
    """Search mode (answerable questions only), one row per kind, then all of them."""
    rows = []
    for kind, r in summary.items():
        name = "**all**" if kind == "ALL" else kind
        figures = [r["recall@1"], r["recall@5"], r[f"recall@{TOP_K}"], r[f"mrr@{TOP_K}"]]
        rows.append([name, r["n"], *(f"{x:.3f}" for x in figures)])
    return markdown_table(["kind", "n", "R@1", "R@5", f"R@{TOP_K}", "MRR"], rows)


def tables(fig: dict[str, Any]) -> str:
    """Both tables and the ingest line, as printed and as the floor test shows them."""
    ing = fig["ingest"]
    return "\n".join(
        [
            f"answers ({fig['answer_mode']}), {COLLECTION} dev.jsonl:",
            answer_table(fig["answer"]["summary"]),
            "",
            f"search, page hits in the top {TOP_K}:",
            search_table(fig["search"]["summary"]),
            "",
            f"ingest: {ing['pdfs']} PDFs, {ing['pages']} pages, {ing['chunks']} chunks ready in "
            f"{ing['seconds']:.1f} s (one PDF at a time, each waited on), "
            f"{ing['pages'] / ing['seconds']:.1f} pages/s",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pdf_qa", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", metavar="FILE", help="also write the figures (and every question's record)")
    p.add_argument("--keep", action="store_true", help="keep the stack's data and logs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reason = not_installed()
    if reason is not None:
        print(f"pdf-qa cannot run: {reason}", file=sys.stderr)
        return 2
    config = run_context("bench.pdf_qa") | cpu()
    api_key = use_bench_key()  # the operator key BenchStack's stack is started with
    try:
        with (
            sigterm_as_interrupt(),
            tempfile.TemporaryDirectory(prefix="pdf-qa-") as work,
            BenchStack(keep=args.keep) as stack,
        ):
            config["embedder"] = stack.embedder_model()
            fig = measure(stack.stack.url, api_key, Path(work))
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped", file=sys.stderr)
        return 130
    config["loadavg_1m_end"] = loadavg()
    print("\n" + tables(fig) + "\n")
    print(
        f"{config['date']}, {config['machine']}, {config['cpu']} ({', '.join(config['cpu_flags'])}); "
        f"1-minute load {config['loadavg_1m_start']} before, {config['loadavg_1m_end']} after; "
        f"command: `{config['command']}`"
    )
    write_json(args.json, {"config": config, **fig})
    return 0


if __name__ == "__main__":
    sys.exit(main())
