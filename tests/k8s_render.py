"""What tests/test_k8s.py and tests/test_k8s_scaling.py share: deploy/k8s rendered.

Each variant (the base, and the cluster overlay) is rendered once per session with
``kubectl kustomize``; :class:`Rendered` looks objects, environments and settings up.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy/k8s"
KUBECTL = shutil.which("kubectl")
VARIANTS = {"base": K8S, "cluster": K8S / "overlays/cluster"}

Obj = dict[str, Any]


@cache
def render(path: Path) -> tuple[Obj, ...]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders deploy/k8s")
    done = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


class Rendered:
    def __init__(self, objects: tuple[Obj, ...]) -> None:
        self.objects = objects

    def of(self, kind: str) -> dict[str, Obj]:
        return {o["metadata"]["name"]: o for o in self.objects if o["kind"] == kind}

    def workloads(self) -> dict[str, Obj]:
        return {**self.of("Deployment"), **self.of("StatefulSet")}

    def env(self, container: Obj) -> dict[str, Any]:
        """A container's environment: its ConfigMaps' values, then its own (values or sources)."""
        result: dict[str, Any] = {}
        for source in container.get("envFrom", []):
            result.update(self.of("ConfigMap")[source["configMapRef"]["name"]]["data"])
        for var in container.get("env", []):
            result[var["name"]] = var.get("value", var.get("valueFrom"))
        return result

    def config(self, name: str) -> str:
        return str(self.of("ConfigMap")["documind-config"]["data"].get(name, ""))

    @property
    def partitions(self) -> int:
        return int(self.config("DOCUMIND_PARTITIONS") or 1)

    @property
    def cluster(self) -> bool:
        return self.config("DOCUMIND_VALKEY_CLUSTER") == "true"


def variant(name: str) -> Rendered:
    """One variant rendered (what each test module's ``k8s`` fixture hands out)."""
    return Rendered(render(VARIANTS[name]))


def container(deployment: Obj) -> Obj:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    result: Obj = only
    return result


def containers(workload: Obj) -> list[Obj]:
    """A pod template's containers, init containers included."""
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def component(workload: Obj) -> str:
    return str(workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


def documind(k8s: Rendered) -> dict[str, Obj]:
    """The four DocuMind Deployments by service name."""
    return {component(d): d for d in k8s.of("Deployment").values()}


def selects(selector: dict[str, str], workload: Obj) -> bool:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return selector.items() <= labels.items()
