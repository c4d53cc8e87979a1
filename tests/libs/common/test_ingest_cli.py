from __future__ import annotations

import io
from pathlib import Path

from libs.common.ingest_cli import Display, Item, collect, summary


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


def test_progress_without_a_terminal_prints_each_change_once() -> None:
    items = [Item(Path("a.pdf"), status="queued"), Item(Path("b.txt"), status="queued")]
    out = io.StringIO()
    display = Display(items, out)
    display.update()
    items[0].status = "embedding"
    display.update()
    display.update()
    assert out.getvalue().splitlines() == ["a.pdf: queued", "b.txt: queued", "a.pdf: embedding"]


def test_progress_on_a_terminal_redraws_bars() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    items = [Item(Path("a.pdf"), status="embedding", chunks=10, embedded=5)]
    out = Tty()
    display = Display(items, out)
    display.update()
    display.update()
    text = out.getvalue()
    assert "a.pdf   [##########----------] 5/10 embedding" in text
    assert "overall [##########----------] 5/10 chunks embedded" in text
    assert "\x1b[2F" in text  # the second draw moves back over the first


def test_summary_table() -> None:
    items = [
        Item(Path("a.pdf"), status="ready", pages=3, chunks=7),
        Item(Path("x.exe"), reason="415: unsupported"),
    ]
    lines = summary(items).splitlines()
    assert lines[0].split() == ["file", "pages", "chunks", "status", "reason"]
    assert lines[1].split() == ["a.pdf", "3", "7", "ready"]
    assert lines[2].split() == ["x.exe", "rejected", "415:", "unsupported"]
