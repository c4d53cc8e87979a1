"""The embedded store's directory (services/retriever/edge_layout.py): one process at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.retriever.edge_layout import LOCK_FILE, EdgeStoreInUse
from services.retriever.edge_store import EdgeStore

REPO_ROOT = Path(__file__).resolve().parents[3]
DIM = 4

# Opens the store, says so on stdout, and keeps it open until stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from services.retriever.edge_store import EdgeStore

    store = EdgeStore(Path(sys.argv[1]), dim_default=4)
    print("open", flush=True)
    sys.stdin.read()
    store.close()
    """
)

# Tries to open the store; prints what stopped it.
OPENER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from services.retriever.edge_layout import EdgeStoreInUse
    from services.retriever.edge_store import EdgeStore

    try:
        EdgeStore(Path(sys.argv[1]), dim_default=4).close()
    except EdgeStoreInUse as exc:
        print(exc.pid, exc.path, str(exc), sep="\\n")
        sys.exit(3)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that has the store at tmp_path open (once it has said so)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "open"
    with process:  # closes the pipes
        yield process
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def test_a_second_process_cannot_open_an_open_store(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, dim_default=DIM)
    try:
        result = subprocess.run(
            [sys.executable, "-c", OPENER, str(tmp_path)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        store.close()
    assert result.returncode == 3, result.stderr
    pid, path, message = result.stdout.split("\n", 2)
    assert int(pid) == os.getpid()
    assert Path(path) == tmp_path
    assert f"{tmp_path} is in use by process {pid}" in message
    assert "DOCUMIND_VECTOR_STORE=qdrant" in message


def test_the_error_names_the_other_process(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(EdgeStoreInUse) as caught:
        EdgeStore(tmp_path, dim_default=DIM)
    assert (caught.value.path, caught.value.pid) == (tmp_path, holder.pid)
    assert str(tmp_path) in str(caught.value)
    assert f"process {holder.pid}" in str(caught.value)


def test_the_store_is_free_once_its_holder_has_closed_it(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=60) == 0
    store = EdgeStore(tmp_path, dim_default=DIM)
    try:
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    finally:
        store.close()


def test_the_store_is_free_once_its_holder_was_killed(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=60) == -signal.SIGKILL
    EdgeStore(tmp_path, dim_default=DIM).close()


def test_a_lock_file_without_a_pid_still_refuses(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, dim_default=DIM)
    try:
        (tmp_path / LOCK_FILE).write_text("")  # the holder between taking the lock and writing its pid
        with pytest.raises(EdgeStoreInUse, match="in use by another process") as caught:
            EdgeStore(tmp_path, dim_default=DIM)
        assert caught.value.pid is None
    finally:
        store.close()
