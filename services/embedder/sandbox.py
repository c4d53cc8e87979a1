"""Parsing in a sandbox: each upload is parsed in a child process the embedder can kill.

Why a process: parsers are libraries fed hostile bytes. A 3.9 MB DOCX of 190 MB
of XML, a PDF page whose content stream inflates to 70 MB, a PDF whose pages share
one huge stream: each once held the embedder for minutes and gigabytes, and a thread
cannot be stopped. A child can be: killed on its wall-time limit, on cancellation
and on shutdown, and capped in address space by the kernel.

How: a fork server (``multiprocessing``'s ``forkserver`` context) is started once,
early, from a clean interpreter and imports the parsers (:mod:`.sandbox_child`).
Each parse forks one fresh child from it and the child parses and chunks one upload
and exits, so no state, memory growth or damage carries from one upload to the
next, and killing one stops exactly one parse. Forking the embedder itself would be
cheaper but is unsafe: it runs threads (ONNX Runtime, asyncio's executor) whose
locks a forked child would inherit held. A pool of long-lived workers would be
cheaper too, but a worker killed mid-parse takes its queue with it, and one that
survives a bomb keeps its fragmented heap. Chunking runs in the child as well (it
is as costly as parsing on a huge text), so the child builds the model's tokenizer
from its JSON. Measured (``bench/parse_sandbox.py``, 2 cores): a small upload costs
about 45 ms of wall time and CPU more in a child than in the embedder, about 30 of
them that tokenizer; hence tiny ``.txt`` and ``.md`` uploads (``parse_inline_bytes``)
are parsed in the embedder itself, off the event loop (see the handler): decoding
and chunking 64 KiB of text is bounded work, about 75 ms.

The parent talks to its child over a socket pair, through asyncio streams (nothing
blocks the event loop): the upload goes in, one JSON reply comes back (see
:mod:`.sandbox_child`). While it waits it asks ``ended`` every
:data:`POLL_INTERVAL_S` whether the parse is still wanted (the handler checks that
the job is not cancelled and the document not deleted), so a cancelled parse stops
within about a quarter of a second; past the wall-time limit, or when the waiting
task is cancelled (on SIGTERM, once the worker's shutdown grace has run out), the
child is killed at once. A child whose embedder dies (even by SIGKILL) exits by
itself. At most ``processes`` children run at a time, at most
``per_tenant`` of them one tenant's (``libs/common/fair_slots.py``): a tenant's slow
uploads always leave the others a process.

The embedder runs as ``python -m services.embedder``. Started from a script instead,
``multiprocessing`` would import that script again in every child (the rule for
spawned processes: guard it with ``if __name__ == "__main__"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from multiprocessing import forkserver
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from libs.common.errors import PermanentError, RetryableError
from libs.common.fair_slots import FairSlots
from services.embedder import sandbox_child
from services.embedder.parse_job import Parsed, ParseJob
from services.embedder.structure import MAX_CONTEXT_CHARS

logger = logging.getLogger(__name__)

#: How often a running parse asks whether it is still wanted.
POLL_INTERVAL_S = 0.25
# How long a killed or finished child may take to be reaped.
_EXIT_WAIT_S = 5.0
# A reply is JSON of the chunks and the pages' text: at most three times the text
# (twice in chunks, with overlaps, once in pages), six bytes a character (escapes),
# plus the fields of every chunk (its context too, escaped). Anything longer is a bug.
_REPLY_BYTES_PER_CHAR = 18
_REPLY_BYTES_PER_CHUNK = 256 + 6 * MAX_CONTEXT_CHARS
_REPLY_SLACK_BYTES = 1024 * 1024
# Signals that mean someone stopped the child, not that the file broke it.
_INTERRUPTED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL})

#: Returns why a running parse is no longer wanted (the exception to raise), or None.
StillWanted = Callable[[], Awaitable[BaseException | None]]


class ParseSandbox:
    """Runs :func:`~.parse_job.parse_and_chunk` in child processes, ``processes`` at a time."""

    def __init__(
        self,
        processes: int,
        log_level: str = "INFO",
        log_format: Literal["json", "text"] = "json",
        *,
        per_tenant: int | None = None,
    ) -> None:
        self._log = (log_level, log_format)
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload([sandbox_child.__name__])
        # Shared round-robin among tenants, at most ``per_tenant`` each: one tenant's
        # queued or slow parses never hold another's behind them all (libs/common/fair_slots.py).
        self._slots = FairSlots(processes, per_tenant)
        # Process.start and close both touch multiprocessing's set of children.
        self._lock = threading.Lock()
        #: Children running now (for tests and the logs).
        self.running: set[BaseProcess] = set()
        # One task per child waits for its exit, then reaps it: its exit code for everyone.
        self._reapers: dict[BaseProcess, asyncio.Task[int]] = {}

    def waiting_tenants(self) -> frozenset[str]:
        """The tenants with a parse waiting for a process."""
        return self._slots.waiting_keys()

    def warm(self) -> None:
        """Start the fork server now (it imports the parsers), not on the first upload."""
        forkserver.ensure_running()

    async def parse(
        self,
        job: ParseJob,
        data: bytes,
        ended: StillWanted,
        log_fields: dict[str, str] | None = None,
        *,
        tenant: str = "",
        on_capped: Callable[[], None] | None = None,
    ) -> Parsed:
        """``job`` parsed in a child; raises what ``ended`` returns, :class:`PermanentError`
        naming the limit a parse passed, or :class:`RetryableError` when it was interrupted.
        The child's log lines carry ``log_fields`` (the job's); ``tenant`` is whose turn
        the parse waits for when every process is busy, or when the tenant holds its
        ``per_tenant`` (then ``on_capped`` is called first). A parse still waiting for a
        process asks ``ended`` too, every :data:`POLL_INTERVAL_S`: an upload deleted or
        cancelled while it queues behind others ends then, not once it gets a process."""
        await self._wait_for_slot(tenant, on_capped, ended)
        try:
            return await self._run(job, data, ended, log_fields or {})
        finally:
            self._slots.release(tenant)

    async def _wait_for_slot(
        self, tenant: str, on_capped: Callable[[], None] | None, ended: StillWanted
    ) -> None:
        waiting = asyncio.ensure_future(self._slots.acquire(tenant, on_capped))
        try:
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=POLL_INTERVAL_S)
                if not waiting.done() and (reason := await ended()) is not None:
                    raise reason
        except BaseException:
            if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                self._slots.release(tenant)  # granted as we gave up: pass it on
            else:
                waiting.cancel()  # leaves the line (or passes on a slot granted meanwhile)
            raise
        waiting.result()

    async def _run(
        self, job: ParseJob, data: bytes, ended: StillWanted, log_fields: dict[str, str]
    ) -> Parsed:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        proc = self._ctx.Process(
            target=sandbox_child.serve,
            args=(theirs, job, *self._log, log_fields),
            name="documind-parse",
            daemon=True,
        )
        starting = loop.run_in_executor(None, self._start, proc, theirs)
        exchange: asyncio.Future[bytes] | None = None
        try:
            await asyncio.shield(starting)
            logger.debug("parsing %s in process %s", job.filename, proc.pid)
            exchange = asyncio.ensure_future(_exchange(ours, data, _reply_limit(job)))
            deadline = loop.time() + job.limits.timeout_s
            while not exchange.done():
                left = deadline - loop.time()
                if left <= 0:
                    raise job.limits.over_time()
                await asyncio.wait({exchange}, timeout=min(POLL_INTERVAL_S, left))
                if not exchange.done() and (reason := await ended()) is not None:
                    raise reason
            try:
                reply = exchange.result()
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise await self._died(proc, job) from exc
            return await _decode(reply)
        finally:
            if exchange is not None:
                exchange.cancel()
            ours.close()
            if not starting.done():
                await starting  # a start cannot be interrupted; the child is killed next
            await self._stop(proc)

    def _start(self, proc: BaseProcess, theirs: socket.socket) -> None:
        try:
            with self._lock:
                proc.start()
                self.running.add(proc)
        finally:
            theirs.close()  # the child has its own copy

    async def _died(self, proc: BaseProcess, job: ParseJob) -> BaseException:
        """Why a child ended without a reply."""
        code = await self._exit_code(proc)
        if code is None:
            return RetryableError("the parser stopped answering")
        if code < 0:
            sig = signal.Signals(-code)
            if sig == signal.SIGXCPU:
                return job.limits.over_time()
            if sig in _INTERRUPTED:
                return RetryableError(f"parsing was interrupted ({sig.name})")
            return job.limits.crashed(sig.name)
        if code > 0:
            return job.limits.crashed(f"exit status {code}")
        return RetryableError("the parser ended without a result")

    async def _exit_code(self, proc: BaseProcess) -> int | None:
        """The child's exit code once it has exited (None if it has not within a few seconds)."""
        reaper = self._reaper(proc)
        if reaper is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(reaper), _EXIT_WAIT_S)
        except TimeoutError:
            return None

    async def _stop(self, proc: BaseProcess) -> None:
        """Kill the child unless it has exited, and wait until it is reaped. Safe to call
        twice at once (a parse's own cleanup, and the shutdown backstop)."""
        reaper = self._reaper(proc)
        if reaper is None:
            return
        if not reaper.done() and proc.exitcode is None:
            proc.kill()
        if await self._exit_code(proc) is None:
            logger.warning("parse process %s did not exit after SIGKILL", proc.pid)

    def _reaper(self, proc: BaseProcess) -> asyncio.Task[int] | None:
        """The task reaping a started child (None for a child never started)."""
        reaper = self._reapers.get(proc)
        if reaper is None and proc in self.running:
            reaper = self._reapers[proc] = asyncio.ensure_future(self._reap(proc))
            reaper.add_done_callback(lambda _: self._reapers.pop(proc, None))
        return reaper

    async def _reap(self, proc: BaseProcess) -> int:
        """Wait for the child to exit (woken by its sentinel, which the fork server writes
        the exit status to; checked every 0.1 s too), then release its handles."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        sentinel = proc.sentinel
        loop.add_reader(sentinel, woken.set)
        try:
            while (code := proc.exitcode) is None:
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), 0.1)
        finally:
            loop.remove_reader(sentinel)
        with self._lock:
            self.running.discard(proc)
            proc.close()
        return code

    async def aclose(self) -> None:
        """Kill whatever still runs (a parse's own cleanup does it; this is the backstop)."""
        for proc in list(self.running):
            await self._stop(proc)


async def _exchange(sock: socket.socket, data: bytes, limit: int) -> bytes:
    """Send the upload, read the reply."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        writer.write(sandbox_child.HEADER.pack(len(data)))
        writer.write(data)
        await writer.drain()
        (size,) = sandbox_child.HEADER.unpack(await reader.readexactly(sandbox_child.HEADER.size))
        if size > limit:
            raise RuntimeError(f"the parser's reply of {size} bytes is over {limit}")
        return await reader.readexactly(size)
    finally:
        writer.close()


async def _decode(reply: bytes) -> Parsed:
    # A big reply is decoded off the event loop.
    found: Any = await asyncio.to_thread(json.loads, reply) if len(reply) > 65536 else json.loads(reply)
    if "error" in found:
        raise PermanentError(str(found["error"]))
    if "bug" in found:
        raise RuntimeError(f"the parser failed: {found['bug']}")
    chunks = [(str(t), int(p), int(s), int(e), str(h), str(c)) for t, p, s, e, h, c in found["chunks"]]
    return Parsed(int(found["pages"]), chunks, [str(t) for t in found["texts"]])


def _reply_limit(job: ParseJob) -> int:
    limits = job.limits
    return (
        limits.max_chars * _REPLY_BYTES_PER_CHAR
        + limits.max_chunks * _REPLY_BYTES_PER_CHUNK
        + _REPLY_SLACK_BYTES
    )
