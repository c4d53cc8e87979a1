"""Run the real services as child processes against a test's Valkey server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from libs.common import constants, keys
from libs.common.admin_key import auth_headers
from libs.common.keys import Partition
from libs.common.settings import MAX_REQUESTS_PER_MINUTE
from libs.common.valkey_server import free_port
from tests.auth import ADMIN_KEY
from tests.integration.backends import sync_client

ROOT = Path(__file__).resolve().parents[2]


P0 = Partition(0)


class Stack:
    """Starts services by name; stops (SIGTERM, then SIGKILL) whatever is left at the end."""

    def __init__(self, valkey_url: str, tmp: Path, **env: str) -> None:
        self.valkey_url = valkey_url
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DOCUMIND_VALKEY_URL": valkey_url,
            "DOCUMIND_DATA_DIR": str(tmp / "data"),
            "DOCUMIND_EMBEDDINGS": "hash",
            "DOCUMIND_READ_BLOCK_MS": "100",
            "DOCUMIND_MAINTENANCE_INTERVAL_S": "0.1",
            "DOCUMIND_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # The gateway's operator key, and the key CLI subprocesses started with this env send.
            "DOCUMIND_ADMIN_KEY": ADMIN_KEY,
            "DOCUMIND_API_KEY": ADMIN_KEY,
            # Tests send bursts of requests with that one key; a test of the limit sets its own.
            "DOCUMIND_RATE_LIMIT_PER_MIN": str(MAX_REQUESTS_PER_MINUTE),
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = 0
        # The last gateway's Prometheus endpoint (its metrics port, off the API's).
        self.gateway_metrics_url = ""
        # No socket timeout: wait_job blocks on a done stream for up to a minute.
        self.cluster = self.env.get("DOCUMIND_VALKEY_CLUSTER", "").lower() in ("1", "true", "yes")
        self.r = sync_client(valkey_url, cluster=self.cluster, socket_timeout=None)

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}-{len(self.procs)}.log").open("ab")
        full_env = {**self.env, **env}
        if name == "gateway":
            self.port = free_port()
            full_env["DOCUMIND_PORT"] = str(self.port)
            full_env.setdefault("DOCUMIND_METRICS_PORT", str(free_port()))
            self.gateway_metrics_url = f"http://127.0.0.1:{full_env['DOCUMIND_METRICS_PORT']}/metrics"
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start_all(self, **env: str) -> None:
        for name in ("embedder", "retriever", "generator", "gateway"):
            self.start(name, **env)
        self.wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def partition_of(self, collection: str, tenant: str = keys.DEFAULT_TENANT) -> Partition:
        """The partition of a collection (and its jobs, documents, streams) with the
        stack's ``DOCUMIND_PARTITIONS``."""
        space = keys.KeySpace(int(self.env.get("DOCUMIND_PARTITIONS", "1")))
        return space.collection(collection, tenant).partition

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer`` with the key the gateway was given (``DOCUMIND_ADMIN_KEY``)."""
        return auth_headers(self.env["DOCUMIND_ADMIN_KEY"])

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client of the gateway that authenticates as the operator; ``kwargs``
        (``timeout``, ...) go to :class:`httpx.Client`."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def tenant_client(self, tenant: str, timeout: float = 30) -> httpx.Client:
        """An HTTP client of the gateway with a new writer key of ``tenant`` (made by the operator)."""
        with self.client(timeout=30) as operator:
            resp = operator.post("/v1/keys", json={"name": tenant, "tenant": tenant, "role": "writer"})
        assert resp.status_code == 201, resp.text
        return httpx.Client(base_url=self.url, headers=auth_headers(resp.json()["key"]), timeout=timeout)

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until the gateway answers /readyz (Valkey up, every stage's group created)."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                self.assert_alive()
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)  # process start-up; there is no event to block on yet
        raise TimeoutError(f"stack not ready; logs in {self.tmp}")

    def wait_healthy(self, timeout_s: float = 60) -> None:
        """Until the gateway answers /healthz (it may run without any worker)."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                self.assert_alive()
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)  # process start-up; there is no event to block on yet
        raise TimeoutError(f"gateway not healthy; logs in {self.tmp}")

    def assert_alive(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.poll() is not None:
                raise AssertionError(f"{proc.args!r} exited with {proc.returncode}; logs in {self.tmp}")

    def wait_group(self, stage: keys.Stage, timeout_s: float = 60) -> None:
        """Until a worker of ``stage`` has created its consumer group."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if all(self.r.xinfo_groups(P0.stream(stage, lane)) for lane in constants.STAGE_LANES[stage]):
                    return
            except redis.ResponseError:
                pass
            time.sleep(0.05)  # process start-up
        raise TimeoutError(f"no {stage} group; logs in {self.tmp}")

    def wait_job(self, job_id: str, timeout_s: float = 60, headers: Any = None) -> dict[str, Any]:
        """Block on the job's done stream, then read its final state through the API
        (as the operator, or with ``headers``: another tenant's job is not found)."""
        self.r.xread({keys.job(job_id).done: "0-0"}, count=1, block=int(timeout_s * 1000))
        resp = httpx.get(f"{self.url}/v1/jobs/{job_id}", headers=headers or self.headers, timeout=10)
        job: dict[str, Any] = resp.json()
        return job

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.r.close()

    def logs(self) -> str:
        """The tail of every service's log, for assertion messages."""
        tails = (
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.tmp.glob("*.log"))
        )
        return "\n".join(tails)
