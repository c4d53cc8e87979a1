"""The parse sandbox: child processes that answer like an in-process parse, and die on time."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import psutil
import pytest

from libs.common.errors import JobEnded, PermanentError, RetryableError
from libs.common.settings import EmbedderSettings
from services.embedder.parse_job import ChunkSpec, Parsed, ParseJob, ParseLimits, parse_and_chunk
from services.embedder.sandbox import POLL_INTERVAL_S, ParseSandbox
from tests import hostile

pytestmark = pytest.mark.timeout(120)

SLOW_PDF = hostile.shared_stream_pdf(pages=200)  # about 0.5 s a page, no text


def job(filename: str, **settings: Any) -> ParseJob:
    s = EmbedderSettings(_env_file=None, chunk_size_words=20, chunk_overlap_words=2, **settings)
    return ParseJob(filename, ChunkSpec.for_backend(s, object()), ParseLimits.from_settings(s))


async def wanted() -> BaseException | None:
    return None


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> float:
    """Seconds until ``condition`` held (it is checked every 10 ms up to the deadline)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def child_of(sandbox: ParseSandbox) -> int:
    await until(lambda: bool(sandbox.running))
    pid = next(iter(sandbox.running)).pid
    assert pid is not None
    return pid


async def outcome(awaitable: Awaitable[Parsed]) -> Parsed | BaseException:
    try:
        return await awaitable
    except Exception as exc:
        return exc


FILES = {
    "a.pdf": hostile.text_pdf("The keeper lit the lamp.", "The gulls were loud (very)."),
    "a.docx": hostile.docx(hostile.paragraph("A paragraph of a document.") * 30),
    "a.html": b"<h1>Title</h1><p>Some text.</p><h2>More</h2><p>Further text.</p>",
    "utf16.txt": "Crème brûlée au café, déjà vu. ".encode("utf-16") * 20,
    "latin1.txt": "Crème brûlée au café, déjà vu. ".encode("latin-1") * 20,
    "random.pdf": os.urandom(5000),
    "empty.pdf": b"",
    "binary.txt": bytes(range(256)) * 40,
}


@pytest.mark.parametrize("filename", FILES)
def test_a_parse_in_a_child_ends_as_a_parse_here(filename: str) -> None:
    data = FILES[filename]
    here = run(outcome(asyncio.to_thread(parse_and_chunk, job(filename), data)))
    there = run(outcome(ParseSandbox(1).parse(job(filename), data, wanted)))
    if isinstance(here, PermanentError):
        assert isinstance(there, PermanentError) and there.message == here.message
    else:
        assert there == here


def test_past_the_wall_time_the_child_is_killed() -> None:
    async def main() -> tuple[BaseException | Parsed, float, int]:
        sandbox = ParseSandbox(1)
        started = time.monotonic()
        task = asyncio.ensure_future(
            outcome(sandbox.parse(job("slow.pdf", parse_timeout_s=1), SLOW_PDF, wanted))
        )
        pid = await child_of(sandbox)
        result = await task
        return result, time.monotonic() - started, pid

    result, elapsed, pid = run(main())
    assert isinstance(result, PermanentError)
    assert result.message == "parsing took longer than 1 s (DOCUMIND_PARSE_TIMEOUT_S)"
    assert 1 <= elapsed < 3
    assert gone(pid)


def test_past_the_memory_limit_the_parse_fails_naming_it() -> None:
    limits = {"parse_memory_mb": 300, "parse_timeout_s": 60}
    result = run(outcome(ParseSandbox(1).parse(job("bomb.pdf", **limits), hostile.zlib_bomb_pdf(), wanted)))
    assert isinstance(result, PermanentError)
    assert result.message == "parsing needed more than 300 MB of memory (DOCUMIND_PARSE_MEMORY_MB)"


def test_the_child_runs_under_its_limits() -> None:
    async def main() -> tuple[Any, ...]:
        sandbox = ParseSandbox(1)
        task = asyncio.ensure_future(
            outcome(sandbox.parse(job("slow.pdf", parse_memory_mb=300, parse_timeout_s=30), SLOW_PDF, wanted))
        )
        child = psutil.Process(await child_of(sandbox))
        await until(lambda: child.rlimit(psutil.RLIMIT_AS)[0] != psutil.RLIM_INFINITY)
        limits = child.rlimit(psutil.RLIMIT_AS), child.rlimit(psutil.RLIMIT_CPU)
        task.cancel()
        return limits

    memory, cpu = run(main())
    assert memory == (300 * 1024 * 1024, 300 * 1024 * 1024)
    assert cpu[0] == 35  # the wall time, plus slack: a backstop should the embedder vanish


def test_cancelling_the_wait_kills_the_child_at_once() -> None:
    async def main() -> tuple[int, float]:
        sandbox = ParseSandbox(1)
        task = asyncio.ensure_future(sandbox.parse(job("slow.pdf"), SLOW_PDF, wanted))
        pid = await child_of(sandbox)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid, await until(lambda: gone(pid), timeout_s=2)

    pid, elapsed = run(main())
    assert gone(pid) and elapsed < 0.5


def test_a_parse_no_longer_wanted_stops_within_a_poll() -> None:
    async def main() -> tuple[BaseException | Parsed, float, int]:
        sandbox = ParseSandbox(1)
        stop = asyncio.Event()

        async def ended() -> BaseException | None:
            return JobEnded("the job is cancelled") if stop.is_set() else None

        task = asyncio.ensure_future(outcome(sandbox.parse(job("slow.pdf"), SLOW_PDF, ended)))
        pid = await child_of(sandbox)
        stop.set()
        started = time.monotonic()
        result = await task
        return result, time.monotonic() - started, pid

    result, elapsed, pid = run(main())
    assert isinstance(result, JobEnded)
    assert elapsed < POLL_INTERVAL_S + 0.5
    assert gone(pid)


@pytest.mark.parametrize(
    ("sig", "error", "reason"),
    [
        (signal.SIGKILL, RetryableError, "parsing was interrupted (SIGKILL)"),
        (
            signal.SIGSEGV,
            PermanentError,
            "parsing crashed (SIGSEGV): the file is malformed or needed more than 2048 MB of memory "
            "(DOCUMIND_PARSE_MEMORY_MB)",
        ),
    ],
)
def test_a_child_that_dies_says_how(sig: signal.Signals, error: type[Exception], reason: str) -> None:
    async def main() -> BaseException | Parsed:
        sandbox = ParseSandbox(1)
        task = asyncio.ensure_future(outcome(sandbox.parse(job("slow.pdf"), SLOW_PDF, wanted)))
        os.kill(await child_of(sandbox), sig)
        return await task

    result = run(main())
    assert isinstance(result, error) and str(result) == reason


def test_at_most_processes_children_run_at_once() -> None:
    async def main() -> list[BaseException | Parsed]:
        sandbox = ParseSandbox(2)
        seen: list[int] = []
        start = sandbox._start

        def counting(proc: Any, theirs: Any) -> None:
            seen.append(len(sandbox.running))
            start(proc, theirs)

        sandbox._start = counting  # type: ignore[method-assign]
        parses = [sandbox.parse(job("slow.pdf", parse_timeout_s=0.5), SLOW_PDF, wanted) for _ in range(4)]
        results = await asyncio.gather(*(outcome(p) for p in parses))
        # Never a third while two run (whether two overlap at all depends on the load).
        assert len(seen) == 4 and max(seen) <= 1
        return list(results)

    assert all(isinstance(r, PermanentError) for r in run(main()))


def test_a_parse_cleaning_up_while_the_sandbox_closes_stops_its_child_once() -> None:
    """At shutdown the worker may give up on a batch while its parse still runs: the
    parse's own cleanup and the sandbox's backstop then stop the same child together."""

    async def main() -> tuple[int, float]:
        sandbox = ParseSandbox(1)
        task = asyncio.ensure_future(sandbox.parse(job("slow.pdf"), SLOW_PDF, wanted))
        pid = await child_of(sandbox)
        started = time.monotonic()
        task.cancel()
        await sandbox.aclose()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not sandbox.running
        return pid, time.monotonic() - started

    pid, elapsed = run(main())
    assert gone(pid) and elapsed < 1


def test_a_parse_waiting_for_a_process_ends_when_no_longer_wanted() -> None:
    """An upload deleted or cancelled while it queues behind another parse ends while it
    waits: it never gets a process, and the running parse is left alone."""

    async def main() -> tuple[BaseException | Parsed, bool, int]:
        sandbox = ParseSandbox(1)
        starts: list[int] = []
        start = sandbox._start

        def counting(proc: Any, theirs: Any) -> None:
            starts.append(1)
            start(proc, theirs)

        sandbox._start = counting  # type: ignore[method-assign]
        # The first holds the only process for up to 5 s (then it is over its time).
        slow = job("slow.pdf", parse_timeout_s=5)
        first = asyncio.ensure_future(outcome(sandbox.parse(slow, SLOW_PDF, wanted)))
        await child_of(sandbox)

        async def cancelled() -> BaseException | None:
            return JobEnded("the job is cancelled")

        second = asyncio.ensure_future(outcome(sandbox.parse(job("b.pdf"), SLOW_PDF, cancelled)))
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        first_running = first not in done
        result = await second
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await sandbox.aclose()
        return result, first_running, len(starts)

    result, first_running, starts = run(main())
    assert isinstance(result, JobEnded)
    assert first_running  # it ended while the first still held the process
    assert starts == 1  # and never had a process of its own
