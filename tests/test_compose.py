"""The compose file names every service, builds each from its Dockerfile, and lets workers scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from libs.common.settings import EmbedderSettings, GatewaySettings, GeneratorSettings, RetrieverSettings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "gateway": GatewaySettings,
    "embedder": EmbedderSettings,
    "retriever": RetrieverSettings,
    "generator": GeneratorSettings,
}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_names_every_service() -> None:
    assert set(compose()["services"]) >= {"valkey", "qdrant", *SETTINGS}


def test_each_service_is_built_from_its_dockerfile() -> None:
    services = compose()["services"]
    for name in SETTINGS:
        build = services[name]["build"]
        assert build["dockerfile"] == f"services/{name}/Dockerfile"
        dockerfile = (ROOT / build["dockerfile"]).read_text()
        assert "USER documind" in dockerfile
        assert f'"services.{name}"' in dockerfile


def test_workers_can_scale() -> None:
    services = compose()["services"]
    for name in ("embedder", "retriever", "generator"):
        assert "container_name" not in services[name]
        assert "ports" not in services[name]
        assert "DOCUMIND_CONSUMER" not in services[name]["environment"]


def test_every_documind_variable_is_a_real_setting() -> None:
    services = compose()["services"]
    for name, cls in SETTINGS.items():
        fields = {f.upper() for f in cls.model_fields}
        for var in services[name]["environment"]:
            assert var.startswith("DOCUMIND_")
            assert var.removeprefix("DOCUMIND_") in fields, f"{name}: {var} is not a setting"


def test_valkey_keeps_an_append_only_file() -> None:
    valkey = compose()["services"]["valkey"]
    assert "--appendonly" in valkey["command"] and "yes" in valkey["command"]
    assert valkey["healthcheck"]
