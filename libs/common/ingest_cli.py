"""``documind ingest``: files and folders in, progress (rich bars, or plain lines), a summary table out."""

from __future__ import annotations

import fnmatch
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from libs.common.cli_output import console, error_detail, is_live, print_table
from libs.common.constants import SUPPORTED_EXTENSIONS
from libs.common.status import DOCUMENT_FINAL, DocumentStatus, is_final


@dataclass
class Item:
    path: Path
    document_id: str = ""
    job_id: str = ""
    status: str = "rejected"
    reason: str = ""
    pages: int | None = None
    chunks: int | None = None
    embedded: int = 0


def collect(paths: list[str], include: list[str], exclude: list[str]) -> list[Path]:
    """Files named directly, and the files under folders (recursively) that pass the globs.

    Without ``include``, a folder contributes the supported document types.
    Globs match a file's name or its path relative to the folder.
    """
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            found.append(path)
            continue
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()

            def matches(globs: list[str], rel: str = rel, file: Path = file) -> bool:
                return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(file.name, g) for g in globs)

            wanted = matches(include) if include else file.suffix.lower() in SUPPORTED_EXTENSIONS
            if wanted and not matches(exclude):
                found.append(file)
    return found


def finished(status: str) -> bool:
    """Whether a document's status will not change: ready or failed, or the final status of its
    ingest job shown as the document's (``cancelled``)."""
    return status in DOCUMENT_FINAL or is_final(status)


class _Bar(ProgressColumn):
    """rich's bar; blank (not pulsing) for a file that ended without a size, e.g. rejected."""

    def __init__(self) -> None:
        super().__init__()
        self.bar = BarColumn()

    def render(self, task: Task) -> RenderableType:
        if task.total is None and task.fields.get("ended"):
            return Text(" " * (self.bar.bar_width or 40))
        return self.bar.render(task)


class Display:
    """Progress while the files are ingested.

    On a terminal: a rich progress bar per file (chunks embedded of its chunks) and
    an overall one, redrawn in place. Elsewhere (a pipe, a CI log): a plain
    ``name: status`` line each time a file's status changes, so each file's last
    line says how it ended.
    """

    def __init__(self, items: list[Item], con: Console) -> None:
        self.items, self.console = items, con
        self.last: dict[int, str] = {}
        self.progress: Progress | None = None
        self.tasks: list[TaskID] = []
        if not is_live(con):
            return
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            _Bar(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}", markup=False),
            console=con,
            auto_refresh=False,
        )
        names = [*(i.path.name for i in items), "overall"]
        width = max(len(n) for n in names)
        self.tasks = [
            self.progress.add_task(n.ljust(width), total=None, status="", ended=False) for n in names
        ]

    def __enter__(self) -> Display:
        if self.progress is not None:
            self._set_bars(self.progress)  # the first draw shows the files as they are
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self) -> None:
        if self.progress is None:
            for i, item in enumerate(self.items):
                if self.last.get(i) != item.status:
                    self.last[i] = item.status
                    self.console.print(f"{item.path.name}: {item.status}", markup=False)
            return
        self._set_bars(self.progress)
        self.progress.refresh()

    def _set_bars(self, progress: Progress) -> None:
        ended = [not i.job_id or finished(i.status) for i in self.items]
        for task, item, end in zip(self.tasks, self.items, ended, strict=False):
            progress.update(task, total=item.chunks, completed=item.embedded, status=item.status, ended=end)
        progress.update(
            self.tasks[-1],
            total=sum(i.chunks or 0 for i in self.items) or None,
            completed=sum(i.embedded for i in self.items),
            status="chunks embedded",
            ended=all(ended),
        )


SUMMARY_HEADER = ["file", "pages", "chunks", "status", "reason"]


def summary_rows(items: list[Item]) -> list[list[str]]:
    return [[str(i.path), str(i.pages or ""), str(i.chunks or ""), i.status, i.reason] for i in items]


def ingest(
    url: str,
    collection: str,
    paths: list[Path],
    timeout_s: float,
    out: TextIO | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> int:
    """Upload, follow to ready or failed, print the summary; 1 if any file failed."""
    items = [Item(p) for p in paths]
    if not items:
        print("no files to ingest", file=sys.stderr)
        return 1
    con = console(out)
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60.0), headers=headers) as client:
        for item in items:
            try:
                with item.path.open("rb") as fh:
                    resp = client.post(
                        f"/v1/collections/{collection}/documents", files={"file": (item.path.name, fh)}
                    )
            except OSError as exc:
                item.reason = str(exc)
                continue
            if resp.status_code != 202:
                item.reason = f"{resp.status_code}: {error_detail(resp)}"
                continue
            body = resp.json()
            item.document_id, item.job_id, item.status = body["document_id"], body["job_id"], "queued"
        deadline = time.monotonic() + timeout_s
        with Display(items, con) as display:
            while True:
                pending = [i for i in items if i.job_id and not finished(i.status)]
                for item in pending:
                    _refresh(client, item)
                display.update()
                pending = [i for i in pending if not finished(i.status)]
                if not pending or time.monotonic() > deadline:
                    break
                # Block on the first unfinished job (wakes when it ends, or after a second).
                client.get(f"/v1/jobs/{pending[0].job_id}", params={"wait": 1})
    for item in items:
        if item.job_id and not finished(item.status):
            item.reason = f"still {item.status} after {timeout_s:.0f}s"
    print_table(con, SUMMARY_HEADER, summary_rows(items))
    return 1 if any(i.status != DocumentStatus.READY for i in items) else 0


def _refresh(client: httpx.Client, item: Item) -> None:
    resp = client.get(f"/v1/documents/{item.document_id}")
    if resp.status_code != 200:
        item.status, item.reason = "failed", f"{resp.status_code}: {error_detail(resp)}"
        return
    doc: dict[str, Any] = resp.json()
    item.status, item.reason = doc["status"], doc.get("error") or ""
    item.pages, item.chunks = doc.get("pages"), doc.get("chunks")
    item.embedded = int(doc.get("progress", {}).get("chunks_embedded") or 0)
