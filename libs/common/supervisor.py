"""The embedded stack: a valkey-server and the four services as child processes.

``documind up`` runs this. The services are the same processes compose runs,
started as ``python -m services.<name>`` so each command line names its
service. A service that dies is restarted; Ctrl-C or SIGTERM stops the
services first (each finishes its in-flight work) and Valkey last.

Valkey is supervised too: when ``valkey-server`` dies it is reaped and started
again on the same port, with the same data dir, ACL file and append-only file, so
the ``DOCUMIND_VALKEY_URL`` the services hold stays valid. Meanwhile the services
keep running: the gateway answers 503 with ``Retry-After`` (``/readyz`` says
"valkey does not answer") and the workers wait with backoff (``outage.py``) until
it answers again. What Valkey acknowledged before it was killed is in the AOF: it
hands each write to the kernel before replying, so a killed process loses none of
it (with ``appendfsync everysec``, a crash of the machine may lose the last second).

Valkey listens on 127.0.0.1 and requires a password: the services connect as the
ACL user ``documind``, which cannot run CONFIG, DEBUG, FLUSHALL, SHUTDOWN or the
rest of ``@dangerous``; its password (``DATA_DIR/valkey.secret``) reaches them
inside ``DOCUMIND_VALKEY_URL``. The supervisor itself needs no admin command (it
stops Valkey with SIGTERM); the ``default`` user's password, for the operator, is
in ``DATA_DIR/valkey-admin.secret``. See :mod:`libs.common.valkey_acl`.

With ``valkey_url`` (``documind up --valkey-url URL``, or ``DOCUMIND_VALKEY_URL`` in
its environment) it starts no Valkey: the services use that server, or that Valkey
Cluster with ``DOCUMIND_VALKEY_CLUSTER=true``, which someone else runs and keeps up.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from libs.common.admin_key import ADMIN_KEY_FILE, ensure_admin_key
from libs.common.urls import mask_credentials
from libs.common.valkey_acl import ValkeyUsers
from libs.common.valkey_server import ValkeyServer

logger = logging.getLogger(__name__)

SERVICES = ("embedder", "retriever", "generator", "gateway")


# Seconds a restarted valkey-server may take to load its AOF and answer.
VALKEY_RESTART_TIMEOUT_S = 120.0


@dataclass
class Restarts:
    """When to restart a process that died: at once, then after 1, 2, 4 ... 30 s while
    it keeps dying within a minute of its last restarts."""

    times: list[float] = field(default_factory=list)

    def next_delay(self) -> float:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < 60] + [now]
        return min(2 ** (len(self.times) - 1), 30) if len(self.times) > 1 else 0


@dataclass
class Child:
    name: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: Restarts = field(default_factory=Restarts)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


# The embedded Valkey's memory limit unless DOCUMIND_VALKEY_MAXMEMORY_MB says: a quarter
# of this machine's memory, at most this much.
DEFAULT_MAXMEMORY_MB: Final = 2048


def maxmemory_mb(extra_env: dict[str, str]) -> int:
    """The embedded Valkey's limit in MB: the setting, else min(RAM / 4, 2 GB)."""
    given = extra_env.get("DOCUMIND_VALKEY_MAXMEMORY_MB") or os.environ.get("DOCUMIND_VALKEY_MAXMEMORY_MB")
    if given and int(given) > 0:
        return int(given)
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return max(64, min(DEFAULT_MAXMEMORY_MB, ram_mb // 4))


class Stack:
    def __init__(
        self,
        data_dir: Path,
        port: int = 8000,
        host: str = "127.0.0.1",
        extra_env: dict[str, str] | None = None,
        grace_s: float = 30.0,
        *,
        valkey_url: str | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self.extra_env = extra_env or {}
        self.grace_s = grace_s
        # A Valkey (or cluster) run by someone else: no valkey-server is started.
        self.external_valkey_url = valkey_url
        self.maxmemory_mb = maxmemory_mb(self.extra_env)
        # Bounded: at the limit Valkey refuses writes rather than evict a job's keys
        # (the gateway turns new work away before that, see memory_guard).
        limits = ["--maxmemory", f"{self.maxmemory_mb}mb", "--maxmemory-policy", "noeviction"]
        self.valkey = ValkeyServer(self.data_dir / "valkey", appendonly=True, extra_args=limits)
        self.valkey_restarts = Restarts()
        self.children: list[Child] = []
        self.stopping = threading.Event()
        # The operator key this start created (shown once), if it created one.
        self.new_admin_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def valkey_url(self) -> str:
        """The Valkey the services use: the one given, else the one started here."""
        return self.external_valkey_url or self.valkey.url

    def start(self, ready_timeout_s: float = 180.0) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.external_valkey_url is None:
            # Created on the first start (of a data dir from before them too), then reused.
            self.valkey.users = ValkeyUsers.ensure(self.data_dir)
            self.valkey.start()
        base = {
            **os.environ,
            "DOCUMIND_VALKEY_URL": self.valkey_url,
            "DOCUMIND_DATA_DIR": str(self.data_dir),
            "DOCUMIND_HOST": self.host,
            "DOCUMIND_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        if self.external_valkey_url is None:  # else whatever its operator says (0: unknown)
            base["DOCUMIND_VALKEY_MAXMEMORY_MB"] = str(self.maxmemory_mb)
            # The server started here has no replica to wait for: no probe for one either
            # (INFO is a command the service user may not run).
            base.setdefault("DOCUMIND_VALKEY_WAIT_REPLICAS", "0")
        if not base.get("DOCUMIND_ADMIN_KEY"):
            key, created = ensure_admin_key(self.data_dir)
            base["DOCUMIND_ADMIN_KEY"] = key
            self.new_admin_key = key if created else None
        for name in SERVICES:
            child = Child(name, base, self.data_dir / "logs" / f"{name}.log")
            child.start()
            self.children.append(child)
        self.wait_ready(ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                for child in self.children:
                    if child.proc is not None and child.proc.poll() is not None:
                        code = child.proc.returncode
                        raise RuntimeError(
                            f"{child.name} exited with {code} during start-up; see {child.log_path}"
                        )
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self.stopping.wait(0.25):  # start-up: processes are loading models
                    raise RuntimeError("stopped during start-up")
        raise TimeoutError(f"the stack was not ready after {timeout_s:.0f}s; see {self.data_dir / 'logs'}")

    def supervise(self) -> None:
        """Restart Valkey and the children when they die, until stop() is called."""
        while not self.stopping.wait(0.5):
            if not self._keep_valkey():
                return
            for child in self.children:
                if child.proc is None or child.proc.poll() is None:
                    continue
                delay = child.restarts.next_delay()
                logger.warning(
                    "%s exited with %s; restarting%s",
                    child.name,
                    child.proc.returncode,
                    f" in {delay}s" if delay else "",
                )
                if delay and self.stopping.wait(delay):
                    return
                child.start()

    def _keep_valkey(self) -> bool:
        """Start valkey-server again if it died (``poll()`` reaps it); False: stopping."""
        proc = self.valkey.proc
        if proc is None or proc.poll() is None:
            return True
        delay = self.valkey_restarts.next_delay()
        logger.warning(
            "valkey-server exited with %s; restarting it on port %d with its AOF%s",
            proc.returncode,
            self.valkey.port,
            f" in {delay}s" if delay else "",
        )
        if delay and self.stopping.wait(delay):
            return False
        try:
            self.valkey.start(timeout_s=VALKEY_RESTART_TIMEOUT_S)
        except (RuntimeError, TimeoutError, OSError) as exc:
            # start() left no server running: the next round tries again, later.
            logger.error("valkey-server did not start again: %s", exc)
            return True
        logger.warning("valkey-server is back on port %d", self.valkey.port)
        return True

    def stop(self) -> None:
        self.stopping.set()
        for child in self.children:
            child.stop()
        deadline = time.monotonic() + self.grace_s
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0fs; killing it", child.name, self.grace_s)
                child.proc.kill()
                child.proc.wait()
        self.valkey.stop()


def run_stack(
    data_dir: Path,
    port: int,
    host: str,
    *,
    valkey_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> int:
    """``documind up``: with ``valkey_url`` against that Valkey (or cluster), else its own."""
    stack = Stack(data_dir, port=port, host=host, valkey_url=valkey_url, extra_env=extra_env)

    def on_signal(signum: int, _frame: object) -> None:
        stack.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        print(f"starting DocuMind (data in {stack.data_dir}) ...", flush=True)
        stack.start()
        valkey = mask_credentials(stack.valkey_url)
        if stack.external_valkey_url is None:
            print(f"Valkey at {valkey} (data in {stack.valkey.data_dir}; restarted if it dies)", flush=True)
        else:
            print(f"Valkey at {valkey} (not started here)", flush=True)
        print(f"DocuMind is ready at {stack.url}  (Ctrl-C to stop)", flush=True)
        if stack.new_admin_key:
            where = stack.data_dir / ADMIN_KEY_FILE
            print(f"operator API key (shown once; kept in {where}): {stack.new_admin_key}", flush=True)
        stack.supervise()
    except (RuntimeError, TimeoutError) as exc:
        print(f"documind: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping DocuMind ...", flush=True)
        stack.stop()
    return 0
