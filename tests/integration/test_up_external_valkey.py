"""`documind up --valkey-url URL` runs the four services against a Valkey it did not
start: here the session's Valkey Cluster, with 3 partitions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from libs.common import keys
from libs.common.valkey_cluster import ValkeyCluster
from libs.common.valkey_server import free_port
from tests.integration.backends import cluster_backend, sync_client
from tests.integration.test_embedded_stack import children

pytestmark = pytest.mark.timeout(240)

CLI = [sys.executable, "-m", "libs.common.cli"]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], check=False, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("given", ["options", "environment"])
def test_up_with_a_cluster_url_starts_no_valkey_and_serves_every_partition(
    valkey_cluster: ValkeyCluster, tmp_path: Path, given: str
) -> None:
    backend = cluster_backend(valkey_cluster)
    port = free_port()
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DOCUMIND_API_KEY", "DOCUMIND_ADMIN_KEY")},
        "DOCUMIND_EMBEDDINGS": "hash",
        "DOCUMIND_URL": f"http://127.0.0.1:{port}",
        "DOCUMIND_DATA_DIR": str(data),
        "DOCUMIND_PARTITIONS": str(backend.partitions),
    }
    env.pop("DOCUMIND_VALKEY_URL", None)
    up = [*CLI, "up", "--port", str(port), "--data-dir", str(data)]
    if given == "options":
        up += ["--valkey-url", backend.url, "--valkey-cluster"]
    else:  # as a deployment sets it for every service
        env |= {"DOCUMIND_VALKEY_URL": backend.url, "DOCUMIND_VALKEY_CLUSTER": "true"}
    proc = subprocess.Popen(
        up,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        printed = []
        for line in proc.stdout:  # blocks until the stack says it is ready
            printed.append(line)
            if "ready at" in line:
                break
        else:
            pytest.fail(f"documind up exited early with {proc.wait()}: {''.join(printed)}")
        assert f"Valkey at {backend.url} (not started here)\n" in printed
        commands = list(children(proc.pid).values())
        assert not any("valkey-server" in cmd for cmd in commands), commands
        assert sum("services." in cmd for cmd in commands) == 4

        # Collections in every partition: ingest and ask through the CLI.
        found: dict[int, str] = {}
        for n in range(100):
            found.setdefault(backend.partition_of(f"bay{n}").index, f"bay{n}")
        assert len(found) == backend.partitions
        for index, name in sorted(found.items()):
            doc = tmp_path / f"{name}.txt"
            doc.write_text(f"The {name} ferry leaves at {index + 6} o'clock from the north pier.")
            out = cli(env, "ingest", str(doc), "--collection", name)
            assert out.returncode == 0, out.stdout + out.stderr
            out = cli(env, "ask", "When does the ferry leave?", "--collection", name)
            assert out.returncode == 0, out.stdout + out.stderr
            assert f"{index + 6} o'clock" in out.stdout

        # What they wrote is on the cluster, each partition's keys in its own slot.
        r = sync_client(backend.url, cluster=True)
        try:
            written = {k.decode().split(":")[1] for k in r.scan_iter(match=f"{keys.PREFIX}:{{p*", count=1000)}
        finally:
            r.close()
        assert {f"{{p{i}}}" for i in found} <= written
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        proc.stdout.close()
    assert proc.returncode == 0
