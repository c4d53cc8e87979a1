"""Fixtures for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from libs.common.valkey_cluster import ValkeyCluster
from libs.common.valkey_server import ValkeyServer
from tests.integration.backends import Backend, cluster_backend, server_backend
from tests.integration.llm_server import LlamaServer, llama_server


@pytest.fixture(scope="session")
def real_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct, for the whole
    session; the test is skipped when the ``llm`` extra is not installed (``make llm``)."""
    with llama_server(tmp_path_factory.mktemp("llama")) as server:
        yield server


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """A real Valkey Cluster for the session (3 primaries, 3 replicas on loopback)."""
    with ValkeyCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def module_valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """Another, for ``module_backend``: a module's stack keeps running while the same
    module's function-scoped tests run theirs on ``valkey_cluster`` (two stacks on one
    Valkey would take each other's messages)."""
    with ValkeyCluster(tmp_path_factory.mktemp("module-cluster")) as cluster:
        yield cluster


def _backend(
    param: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cluster: str
) -> Iterator[Backend]:
    if param == "cluster":
        yield cluster_backend(request.getfixturevalue(cluster))
        return
    with ValkeyServer(tmp_path_factory.mktemp("valkey")) as server:
        yield server_backend(server.url)


@pytest.fixture(params=["server", "cluster"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """An empty Valkey for one test: a server of its own, then the (emptied) cluster."""
    yield from _backend(request.param, request, tmp_path_factory, "valkey_cluster")


@pytest.fixture(scope="module", params=["server", "cluster"])
def module_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """``backend`` for a module's tests together (a module-scoped stack)."""
    yield from _backend(request.param, request, tmp_path_factory, "module_valkey_cluster")
