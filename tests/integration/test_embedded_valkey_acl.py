"""The embedded stack's services work as Valkey's restricted ACL user, and only as it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from libs.common.supervisor import Stack
from libs.common.valkey_acl import ADMIN_SECRET_FILE, SERVICE_SECRET_FILE, SERVICE_USER
from libs.common.valkey_server import free_port

pytestmark = pytest.mark.timeout(240)

CLI = [sys.executable, "-m", "libs.common.cli"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    started = Stack(
        tmp_path / "data",
        port=free_port(),
        extra_env={"DOCUMIND_EMBEDDINGS": "hash", "DOCUMIND_VALKEY_MAXMEMORY_MB": "64"},
    )
    try:
        started.start()
        yield started
    finally:
        started.stop()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the stack, with the operator key it finds in the data dir."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCUMIND_API_KEY", "DOCUMIND_ADMIN_KEY")}
    env |= {"DOCUMIND_URL": stack.url, "DOCUMIND_DATA_DIR": str(stack.data_dir)}
    return subprocess.run([*CLI, *args], check=False, env=env, capture_output=True, text=True, timeout=120)


def test_the_pipeline_runs_as_the_service_user_without_one_refused_command(
    stack: Stack, tmp_path: Path
) -> None:
    service_url = stack.valkey.url
    assert service_url.startswith(f"redis://{SERVICE_USER}:")
    assert {child.env["DOCUMIND_VALKEY_URL"] for child in stack.children} == {service_url}
    password = (stack.data_dir / SERVICE_SECRET_FILE).read_text().strip()
    assert f":{password}@" in service_url
    assert (stack.data_dir / ADMIN_SECRET_FILE).read_text().strip() not in service_url

    doc = tmp_path / "harbour.txt"
    doc.write_text("The harbour master keeps the tide tables. High tide on Friday is at 06:40.")
    out = cli(stack, "ingest", str(doc), "--collection", "port")
    assert out.returncode == 0, out.stdout + out.stderr
    out = cli(stack, "ask", "When is high tide on Friday?", "--collection", "port")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "06:40" in out.stdout

    with redis.Redis.from_url(stack.valkey.admin_url, decode_responses=True) as admin:
        # Every command the services ran was allowed: the ACL log records each refusal.
        assert admin.acl_log() == []
        others = [c for c in admin.client_list() if c["id"] != str(admin.client_id())]
        assert others and {c["user"] for c in others} == {SERVICE_USER}


def test_the_embedded_valkey_is_bounded_and_refuses_new_work_near_its_limit(stack: Stack) -> None:
    with redis.Redis.from_url(stack.valkey.admin_url, decode_responses=True) as admin:
        assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        limit = int(admin.config_get("maxmemory")["maxmemory"])
        assert limit == stack.maxmemory_mb * 1024 * 1024 > 0
        assert {c.env["DOCUMIND_VALKEY_MAXMEMORY_MB"] for c in stack.children} == {str(stack.maxmemory_mb)}
        # Fill Valkey past the gateway's high-water mark (90 % of the limit).
        used = int(admin.memory_stats()["total.allocated"])
        chunk = 1024 * 1024
        for i in range(max(0, int(0.92 * limit - used)) // chunk + 1):
            admin.set(f"filler:{i}", "x" * chunk)
        out = cli(stack, "ask", "Is there room?", "--collection", "port")
        assert out.returncode != 0
        assert "the job store is" in out.stdout + out.stderr and "full" in out.stdout + out.stderr
