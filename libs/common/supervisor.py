"""The embedded stack: a valkey-server and the four services as child processes.

``documind up`` runs this. The services are the same processes compose runs,
started as ``python -m services.<name>`` so each command line names its
service. A service that dies is restarted; Ctrl-C or SIGTERM stops the
services first (each finishes its in-flight work) and Valkey last.

Valkey listens on 127.0.0.1 and requires a password: the services connect as the
ACL user ``documind``, which cannot run CONFIG, DEBUG, FLUSHALL, SHUTDOWN or the
rest of ``@dangerous``; its password (``DATA_DIR/valkey.secret``) reaches them
inside ``DOCUMIND_VALKEY_URL``. The supervisor itself needs no admin command (it
stops Valkey with SIGTERM); the ``default`` user's password, for the operator, is
in ``DATA_DIR/valkey-admin.secret``. See :mod:`libs.common.valkey_acl`.
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

import httpx

from libs.common.admin_key import ADMIN_KEY_FILE, ensure_admin_key
from libs.common.valkey_acl import ValkeyUsers
from libs.common.valkey_server import ValkeyServer

logger = logging.getLogger(__name__)

SERVICES = ("embedder", "retriever", "generator", "gateway")


@dataclass
class Child:
    name: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

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


class Stack:
    def __init__(
        self,
        data_dir: Path,
        port: int = 8000,
        host: str = "127.0.0.1",
        extra_env: dict[str, str] | None = None,
        grace_s: float = 30.0,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self.extra_env = extra_env or {}
        self.grace_s = grace_s
        self.valkey = ValkeyServer(self.data_dir / "valkey", appendonly=True)
        self.children: list[Child] = []
        self.stopping = threading.Event()
        # The operator key this start created (shown once), if it created one.
        self.new_admin_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, ready_timeout_s: float = 180.0) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        # Created on the first start (of a data dir from before them too), then reused.
        self.valkey.users = ValkeyUsers.ensure(self.data_dir)
        self.valkey.start()
        base = {
            **os.environ,
            "DOCUMIND_VALKEY_URL": self.valkey.url,
            "DOCUMIND_DATA_DIR": str(self.data_dir),
            "DOCUMIND_HOST": self.host,
            "DOCUMIND_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
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
        """Restart children that die, until stop() is called."""
        while not self.stopping.wait(0.5):
            for child in self.children:
                if child.proc is None or child.proc.poll() is None:
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                delay = min(2 ** (len(child.restarts) - 1), 30) if len(child.restarts) > 1 else 0
                logger.warning(
                    "%s exited with %s; restarting%s",
                    child.name,
                    child.proc.returncode,
                    f" in {delay}s" if delay else "",
                )
                if delay and self.stopping.wait(delay):
                    return
                child.start()

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


def run_stack(data_dir: Path, port: int, host: str) -> int:
    stack = Stack(data_dir, port=port, host=host)

    def on_signal(signum: int, _frame: object) -> None:
        stack.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        print(f"starting DocuMind (data in {stack.data_dir}) ...", flush=True)
        stack.start()
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
