from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from libs.common.cli_output import console, print_table
from libs.common.ingest_cli import SUMMARY_HEADER, Display, Item, collect, finished, summary_rows


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "deep" / "er").mkdir(parents=True)
    for rel in ("a.pdf", "b.TXT", "deep/c.md", "deep/er/d.html", "deep/skip.log", "deep/er/draft.md"):
        (root / rel).write_text("x")
    return root


def test_folders_give_supported_files_recursively(tmp_path: Path) -> None:
    root = tree(tmp_path)
    names = [p.relative_to(root).as_posix() for p in collect([str(root)], [], [])]
    assert names == ["a.pdf", "b.TXT", "deep/c.md", "deep/er/d.html", "deep/er/draft.md"]


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    root = tree(tmp_path)
    names = [p.relative_to(root).as_posix() for p in collect([str(root)], ["*.md", "*.log"], ["draft*"])]
    assert names == ["deep/c.md", "deep/skip.log"]
    assert [p.name for p in collect([str(root)], [], ["deep/*"])] == ["a.pdf", "b.TXT"]


def test_named_files_are_taken_as_they_are(tmp_path: Path) -> None:
    f = tmp_path / "tool.exe"
    assert collect([str(f)], [], []) == [f]  # the gateway says why it refuses it


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_a_terminal_prints_each_change_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich's override: a pipe still gets plain lines
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    items = [Item(Path("a.pdf"), job_id="j1", status="queued"), Item(Path("[b].txt"), status="rejected")]
    out = io.StringIO()
    with Display(items, console(out)) as display:
        display.update()
        items[0].status, items[0].chunks, items[0].embedded = "embedding", 10, 5
        display.update()
        items[0].embedded = 8  # not a change of status: no line
        display.update()
        items[0].status = "ready"
        display.update()
    assert out.getvalue().splitlines() == [
        "a.pdf: queued",
        "[b].txt: rejected",
        "a.pdf: embedding",
        "a.pdf: ready",
    ]


def test_progress_on_a_terminal_redraws_rich_bars() -> None:
    items = [
        Item(Path("a.pdf"), job_id="j1", status="embedding", chunks=10, embedded=5),
        Item(Path("b.txt"), job_id="j2", status="queued"),
    ]
    out = Tty()
    with Display(items, console(out)) as display:
        display.update()
        items[1].status, items[1].chunks = "embedding", 6
        display.update()
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"a\.pdf +[━╸╺]+ +5/10 embedding", plain)
    assert re.search(r"b\.txt +[━╸╺]+ +0/6 +embedding", plain)
    assert re.search(r"overall +[━╸╺]+ +5/16 chunks embedded", plain)
    assert "\x1b[1A" in text  # later draws move back over the earlier ones
    assert "\x1b[?25h" in text  # the cursor is shown again at the end


def test_progress_on_a_dumb_terminal_prints_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    out = Tty()
    with Display([Item(Path("a.pdf"), job_id="j1", status="parsing")], console(out)) as display:
        display.update()
    assert out.getvalue() == "a.pdf: parsing\n"


def test_a_document_is_finished_when_ready_failed_or_its_job_ended() -> None:
    assert [finished(s) for s in ("ready", "failed", "cancelled", "expired")] == [True] * 4
    assert [finished(s) for s in ("queued", "parsing", "embedding", "indexing")] == [False] * 4


def test_summary_table() -> None:
    items = [
        Item(Path("a.pdf"), status="ready", pages=3, chunks=7),
        Item(Path("x.exe"), reason="415: unsupported"),
    ]
    out = io.StringIO()
    print_table(console(out), SUMMARY_HEADER, summary_rows(items))
    assert out.getvalue() == (
        "file   pages  chunks  status    reason\n"
        "a.pdf  3      7       ready\n"
        "x.exe                 rejected  415: unsupported\n"
    )


def test_summary_table_on_a_terminal_is_styled() -> None:
    out = Tty()
    print_table(console(out), SUMMARY_HEADER, summary_rows([Item(Path("a.pdf"), status="ready", pages=1)]))
    text = out.getvalue()
    assert "\x1b[1m" in text  # a bold header
    assert "─" in text  # ruled off from the rows
    assert re.search(r"a\.pdf +1 +ready", re.sub(r"\x1b\[[0-9;]*m", "", text))
