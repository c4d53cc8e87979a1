"""`documind up` runs the whole stack; `documind ingest` and `documind ask` talk to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common.valkey_acl import ADMIN_SECRET_FILE, SERVICE_SECRET_FILE
from libs.common.valkey_server import free_port

pytestmark = pytest.mark.timeout(240)

CLI = [sys.executable, "-m", "libs.common.cli"]


def children(pid: int) -> dict[int, str]:
    """Child processes of ``pid`` and their command lines, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def service_pid(pid: int, name: str) -> int | None:
    return next((p for p, cmd in children(pid).items() if f"services.{name}" in cmd), None)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, dict[str, str]]]:
    port = free_port()
    data = tmp_path / "data"
    # The CLI finds the operator key where `documind up` keeps it (DATA_DIR/admin.key), as
    # after `make run`: no key from the caller's environment.
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DOCUMIND_API_KEY", "DOCUMIND_ADMIN_KEY")},
        "DOCUMIND_EMBEDDINGS": "hash",
        "DOCUMIND_URL": f"http://127.0.0.1:{port}",
        "DOCUMIND_DATA_DIR": str(data),
    }
    proc = subprocess.Popen(
        [*CLI, "up", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    printed = []
    for line in proc.stdout:  # blocks until the stack says it is ready
        printed.append(line)
        if "ready at" in line:
            assert f"http://127.0.0.1:{port}" in line
            break
    else:
        pytest.fail(f"documind up exited early with {proc.wait()}")
    # The Valkey it started and supervises, its password masked.
    assert any(line.startswith("Valkey at redis://documind:***@127.0.0.1:") for line in printed), printed
    secrets = [(data / name).read_text().strip() for name in (SERVICE_SECRET_FILE, ADMIN_SECRET_FILE)]
    assert not any(secret in "".join(printed) for secret in secrets)
    # The operator key it created on first start: printed once, kept for the CLI (0600).
    shown = proc.stdout.readline()
    kept = data / "admin.key"
    assert "operator API key" in shown and shown.split()[-1] == kept.read_text().strip()
    assert kept.stat().st_mode & 0o777 == 0o600
    try:
        yield proc, f"http://127.0.0.1:{port}", env
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        proc.stdout.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], check=False, env=env, capture_output=True, text=True, timeout=120)


def test_up_ingest_ask_restart_and_stop(
    stack: tuple[subprocess.Popen[str], str, dict[str, str]], tmp_path: Path
) -> None:
    proc, _url, env = stack
    names = {
        cmd.split("services.")[1].split()[0] for cmd in children(proc.pid).values() if "services." in cmd
    }
    assert names == {"gateway", "embedder", "retriever", "generator"}
    assert any("valkey-server" in cmd for cmd in children(proc.pid).values())

    doc = tmp_path / "harbour.txt"
    doc.write_text("The harbour master keeps the tide tables. High tide on Friday is at 06:40.")
    out = cli(env, "ingest", str(doc), "--collection", "port")
    assert out.returncode == 0, out.stderr
    assert "harbour.txt: ready" in out.stdout

    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ")
    out = cli(env, "ingest", str(bad), "--collection", "port")
    assert out.returncode == 1
    assert "rejected  415: tool.exe: unsupported file type" in out.stdout

    # Folders are searched recursively; globs choose what is taken.
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Buoys are painted red on the port side.")
    (folder / "sub" / "b.md").write_text("# Lights\n\nThe green light marks starboard.")
    (folder / "c.txt").write_text("Excluded by the glob.")
    (folder / "log.bin").write_bytes(b"\x00\x01")
    out = cli(env, "ingest", str(folder), "--collection", "port", "--exclude", "c.*")
    assert out.returncode == 0, out.stdout + out.stderr
    table = out.stdout.splitlines()[-3:]
    assert table[0].split() == ["file", "pages", "chunks", "status", "reason"]
    assert [row.split()[0] for row in table[1:]] == [str(folder / "a.txt"), str(folder / "sub" / "b.md")]
    assert all(row.split()[1:4] == ["1", "1", "ready"] for row in table[1:])

    # A crashed service is restarted by the supervisor.
    victim = service_pid(proc.pid, "embedder")
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (service_pid(proc.pid, "embedder") in (None, victim)) and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for the supervisor to notice and start a new process
    assert service_pid(proc.pid, "embedder") not in (None, victim)

    out = cli(env, "ask", "When is high tide on Friday?", "--collection", "port")
    assert out.returncode == 0, out.stderr
    assert "06:40" in out.stdout
    assert "harbour.txt, page 1" in out.stdout
    assert "(mode: extractive)" in out.stdout

    out = cli(env, "collections")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["collection", "documents", "chunks", "description"]
    assert out.stdout.splitlines()[1].split()[:2] == ["port", "3"]
    out = cli(env, "documents", "port")
    assert out.returncode == 0, out.stderr
    assert "harbour.txt" in out.stdout and "ready" in out.stdout
    assert cli(env, "documents", "nope").returncode == 1

    kids = list(children(proc.pid))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in kids)
