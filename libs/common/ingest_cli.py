"""``documind ingest``: files and folders in, a progress display, a summary table out."""

from __future__ import annotations

import fnmatch
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from libs.common.cli_output import error_detail, table
from libs.common.constants import SUPPORTED_EXTENSIONS

FINAL = {"ready", "failed"}


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


def _bar(done: int, total: int | None, width: int = 20) -> str:
    if not total:
        return "[" + " " * width + "]"
    filled = min(width, round(width * done / total))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class Display:
    """Redraws one line per file and an overall line on a terminal; elsewhere prints changes."""

    def __init__(self, items: list[Item], out: TextIO) -> None:
        self.items, self.out = items, out
        self.tty = out.isatty()
        self.drawn = 0
        self.last: dict[int, str] = {}

    def update(self) -> None:
        if not self.tty:
            for i, item in enumerate(self.items):
                if self.last.get(i) != item.status:
                    self.last[i] = item.status
                    print(f"{item.path.name}: {item.status}", file=self.out, flush=True)
            return
        width = max(len("overall"), *(len(i.path.name) for i in self.items))
        lines = [
            f"{i.path.name.ljust(width)} {_bar(i.embedded, i.chunks)} {i.embedded}/{i.chunks or '?'} "
            f"{i.status}"
            for i in self.items
        ]  # fmt: skip
        done = sum(i.embedded for i in self.items)
        total = sum(i.chunks or 0 for i in self.items)
        lines.append(f"{'overall'.ljust(width)} {_bar(done, total)} {done}/{total} chunks embedded")
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")
        self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)


def summary(items: list[Item]) -> str:
    rows = [[str(i.path), str(i.pages or ""), str(i.chunks or ""), i.status, i.reason] for i in items]
    return table(["file", "pages", "chunks", "status", "reason"], rows)


def ingest(url: str, collection: str, paths: list[Path], timeout_s: float, out: TextIO = sys.stdout) -> int:
    """Upload, follow to ready or failed, print the summary; 1 if any file failed."""
    items = [Item(p) for p in paths]
    if not items:
        print("no files to ingest", file=sys.stderr)
        return 1
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60.0)) as client:
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
        display = Display(items, out)
        deadline = time.monotonic() + timeout_s
        while True:
            pending = [i for i in items if i.job_id and i.status not in FINAL]
            for item in pending:
                _refresh(client, item)
            display.update()
            pending = [i for i in pending if i.status not in FINAL]
            if not pending or time.monotonic() > deadline:
                break
            # Block on the first unfinished job (wakes when it ends, or after a second).
            client.get(f"/v1/jobs/{pending[0].job_id}", params={"wait": 1})
    for item in items:
        if item.job_id and item.status not in FINAL:
            item.reason = f"still {item.status} after {timeout_s:.0f}s"
    print(summary(items), file=out)
    return 1 if any(i.status != "ready" for i in items) else 0


def _refresh(client: httpx.Client, item: Item) -> None:
    resp = client.get(f"/v1/documents/{item.document_id}")
    if resp.status_code != 200:
        item.status, item.reason = "failed", f"{resp.status_code}: {error_detail(resp)}"
        return
    doc: dict[str, Any] = resp.json()
    item.status, item.reason = doc["status"], doc.get("error") or ""
    item.pages, item.chunks = doc.get("pages"), doc.get("chunks")
    item.embedded = int(doc.get("progress", {}).get("chunks_embedded") or 0)
