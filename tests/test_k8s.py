"""deploy/k8s: what ``kubectl kustomize`` renders is valid and does what deploy/k8s/README.md says.

Each variant (the base, and the cluster overlay) is rendered once with ``kubectl
kustomize``. Kubernetes objects are checked against the API schemas of a pinned
Kubernetes release (the ``kubernetes-validate`` package ships them), strictly: an
unknown field is an error. KEDA's objects are checked against the openAPIV3Schema of
the CRDs kept in deploy/k8s/schemas, unknown fields included (the API server would
drop them silently). Then what a user relies on: probes, resources, shutdown grace,
scraped metrics ports, real settings only, Secrets by reference only, the retriever
on a Qdrant server, and ScaledObjects that scale real Deployments on the streams
libs/common/keys.py names, in every partition.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from libs.common import metrics
from libs.common.cli import build_parser
from libs.common.constants import BULK, INTERACTIVE, STAGE_LANES, STAGES
from libs.common.keys import Partition, Stage
from libs.common.settings import (
    CommonSettings,
    EmbedderSettings,
    GatewaySettings,
    GeneratorSettings,
    RetrieverSettings,
    WorkerSettings,
)

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy/k8s"
KUBECTL = shutil.which("kubectl")
# The Kubernetes release whose API schemas the objects must satisfy.
KUBERNETES_VERSION = "1.33.0"
KEDA_SCHEMAS = {
    "ScaledObject": K8S / "schemas/keda-scaledobject-v2.20.2.yaml",
    "TriggerAuthentication": K8S / "schemas/keda-triggerauthentication-v2.20.2.yaml",
}
VARIANTS = {"base": K8S, "cluster": K8S / "overlays/cluster"}
SETTINGS: dict[str, type[CommonSettings]] = {
    "gateway": GatewaySettings,
    "embedder": EmbedderSettings,
    "retriever": RetrieverSettings,
    "generator": GeneratorSettings,
}
HEALTHCHECK = ["python", "-m", "libs.common.healthcheck"]

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


@pytest.fixture(params=list(VARIANTS))
def k8s(request: pytest.FixtureRequest) -> Rendered:
    return Rendered(render(VARIANTS[request.param]))


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


# --- schemas -------------------------------------------------------------------------


@cache
def crd_schema(kind: str) -> Obj:
    crd = yaml.safe_load(KEDA_SCHEMAS[kind].read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: Obj = version["schema"]["openAPIV3Schema"]
    return schema


def unknown_fields(value: Any, schema: Obj, path: str = "") -> list[str]:
    """Fields the schema does not define (the API server would drop them without a word)."""
    if isinstance(value, dict) and "properties" in schema:
        found = []
        for key, item in value.items():
            if key in schema["properties"]:
                found += unknown_fields(item, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("additionalProperties") and not schema.get(
                "x-kubernetes-preserve-unknown-fields"
            ):
                found.append(f"{path}.{key}")
        return found
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [f for k, v in value.items() for f in unknown_fields(v, schema["additionalProperties"], k)]
    if isinstance(value, list) and "items" in schema:
        return [f for i, v in enumerate(value) for f in unknown_fields(v, schema["items"], f"{path}[{i}]")]
    return []


def validate(obj: Obj) -> None:
    """Raise unless ``obj`` is valid for its Kubernetes API or its KEDA CRD."""
    if obj["apiVersion"].startswith("keda.sh/"):
        schema = crd_schema(obj["kind"])
        jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)
        extra = unknown_fields(obj, schema)
        if extra:
            raise jsonschema.ValidationError(f"unknown fields: {extra}")
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_rendered_object_is_valid(k8s: Rendered) -> None:
    kinds = {o["kind"] for o in k8s.objects}
    assert {"Deployment", "ScaledObject", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    for obj in k8s.objects:
        validate(obj)


@pytest.mark.parametrize(
    ("kind", "name", "break_it"),
    [
        ("Deployment", "documind-embedder", lambda c: c.update(readinesProbe=c.pop("readinessProbe"))),
        ("Deployment", "documind-gateway", lambda c: c["ports"][0].update(containerPort="8000")),
        ("ScaledObject", "documind-embedder", lambda s: s.update(minReplicaCount=-1)),
        ("ScaledObject", "documind-embedder", lambda s: s.update(pollingIntervall=10)),
        ("ScaledObject", "documind-generator", lambda s: s["triggers"][0].pop("type")),
    ],
)
def test_validation_can_fail(kind: str, name: str, break_it: Any) -> None:
    obj = yaml.safe_load(yaml.safe_dump(Rendered(render(K8S)).of(kind)[name]))
    break_it(container(obj) if kind == "Deployment" else obj["spec"])
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        validate(obj)


# --- the Deployments -------------------------------------------------------------------


def test_the_four_services_run_from_their_images(k8s: Rendered) -> None:
    services = documind(k8s)
    assert set(services) == set(SETTINGS)
    for name, deployment in services.items():
        assert deployment["metadata"]["name"] == f"documind-{name}"
        assert container(deployment)["image"].split(":")[0] == f"documind-{name}"
        # The image's unprivileged user, so runAsNonRoot can check it.
        user = re.findall(r"^USER (\d+):(\d+)$", (ROOT / f"services/{name}/Dockerfile").read_text(), re.M)
        pod = deployment["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] and user[-1] == (str(pod["runAsUser"]), str(pod["runAsGroup"])), name
        # The autoscalers own the replica count: `kubectl apply` must not reset it.
        assert "replicas" not in deployment["spec"], name


def test_every_container_has_probes_and_resource_requests(k8s: Rendered) -> None:
    for name, workload in k8s.workloads().items():
        pod = workload["spec"]["template"]["spec"]
        for c in pod["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
        for c in pod.get("initContainers", []):
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name


def test_workers_probe_what_their_image_health_check_runs(k8s: Rendered) -> None:
    for name in STAGES:
        c = container(documind(k8s)[name])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["exec"]["command"] == HEALTHCHECK, (name, probe)
        dockerfile = (ROOT / f"services/{name}/Dockerfile").read_text()
        assert 'CMD ["python", "-m", "libs.common.healthcheck"]' in dockerfile


def test_gateway_probes_are_real_routes_on_an_allowed_host(k8s: Rendered) -> None:
    from services.gateway.health import router

    routes = {getattr(r, "path", "") for r in router.routes}
    c = container(documind(k8s)["gateway"])
    allowed = k8s.env(c)["DOCUMIND_ALLOWED_HOSTS"].split(",")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == int(k8s.env(c)["DOCUMIND_PORT"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in routes and get["port"] == "http"
        (host,) = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
        assert host in allowed


def test_pods_outlive_their_shutdown_grace(k8s: Rendered) -> None:
    for name, deployment in documind(k8s).items():
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        if name == "gateway":
            main = (ROOT / "services/gateway/main.py").read_text()
            match = re.search(r"timeout_graceful_shutdown=(\d+)", main)
            assert match is not None
            pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
            grace = float(match.group(1)) + pre_stop
        else:
            default = WorkerSettings.model_fields["shutdown_grace_s"].default
            grace = float(k8s.env(c).get("DOCUMIND_SHUTDOWN_GRACE_S", default))
        assert pod["terminationGracePeriodSeconds"] > grace, name


def test_every_process_serves_metrics_on_a_fixed_scraped_port(k8s: Rendered) -> None:
    for name, deployment in documind(k8s).items():
        env = k8s.env(container(deployment))
        port = int(env["DOCUMIND_METRICS_PORT"])
        assert port > 0, f"{name}: a fixed port (0 picks a random one)"
        assert env["DOCUMIND_METRICS_HOST"] == "0.0.0.0", f"{name}: reachable from Prometheus"
        assert port in {p["containerPort"] for p in container(deployment)["ports"]}
        notes = deployment["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert (notes["prometheus.io/port"], notes["prometheus.io/path"]) == (str(port), "/metrics")


def test_every_variable_is_a_real_setting(k8s: Rendered) -> None:
    for name, deployment in documind(k8s).items():
        for c in containers(deployment):
            fields = {f.upper() for f in SETTINGS[name].model_fields}
            for var in k8s.env(c):
                assert var.startswith("DOCUMIND_"), f"{name}: {var}"
                assert var.removeprefix("DOCUMIND_") in fields, f"{name}: {var} is not a setting"


def test_secrets_are_references_the_readme_lists(k8s: Rendered) -> None:
    assert "Secret" not in {o["kind"] for o in k8s.objects}, "secrets are the operator's, never in the repo"
    readme = (K8S / "README.md").read_text()
    refs = [
        source["secretKeyRef"]
        for workload in k8s.workloads().values()
        for c in containers(workload)
        for source in k8s.env(c).values()
        if isinstance(source, dict) and "secretKeyRef" in source
    ]
    refs += [r for a in k8s.of("TriggerAuthentication").values() for r in a["spec"]["secretTargetRef"]]
    assert refs
    for ref in refs:
        assert f"`{ref['name']}`" in readme and f"`{ref['key']}`" in readme, ref
    for name, deployment in documind(k8s).items():
        for var, source in k8s.env(container(deployment)).items():
            if re.search(r"(API_KEY|PASSWORD|SECRET_ACCESS_KEY|ADMIN_KEY|VALKEY_URL)$", var):
                assert isinstance(source, dict) and "secretKeyRef" in source, f"{name}: {var}"


def test_the_retriever_uses_the_qdrant_server(k8s: Rendered) -> None:
    env = k8s.env(container(documind(k8s)["retriever"]))
    assert env["DOCUMIND_VECTOR_STORE"] == "qdrant", "replicas never open one embedded edge store"
    assert "DOCUMIND_EDGE_PATH" not in env
    url = urlsplit(env["DOCUMIND_QDRANT_URL"])
    service = k8s.of("Service")[str(url.hostname)]
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    (qdrant,) = [w for w in k8s.workloads().values() if selects(service["spec"]["selector"], w)]
    assert qdrant["kind"] == "StatefulSet" and qdrant["spec"]["volumeClaimTemplates"]


def test_the_gateway_creates_every_group_before_it_serves(k8s: Rendered) -> None:
    gateway = documind(k8s)["gateway"]["spec"]["template"]["spec"]
    (init,) = gateway["initContainers"]
    assert init["image"] == container(documind(k8s)["gateway"])["image"]
    assert init["command"][-1] == "init-streams"
    assert build_parser().parse_args(["init-streams"]).command == "init-streams"
    # The same partitions, cluster mode and Valkey as the workers it makes room for.
    init_env = k8s.env(init)
    for stage in STAGES:
        worker_env = k8s.env(container(documind(k8s)[stage]))
        for var in ("DOCUMIND_PARTITIONS", "DOCUMIND_VALKEY_URL", "DOCUMIND_VALKEY_CLUSTER"):
            assert init_env.get(var) == worker_env.get(var), (stage, var)


# --- scaling -------------------------------------------------------------------------


def selects(selector: dict[str, str], workload: Obj) -> bool:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return selector.items() <= labels.items()


def test_every_workload_has_one_pdb_that_selects_its_pods(k8s: Rendered) -> None:
    pdbs = k8s.of("PodDisruptionBudget").values()
    for pdb in pdbs:
        chosen = [w for w in k8s.workloads().values() if selects(pdb["spec"]["selector"]["matchLabels"], w)]
        assert len(chosen) == 1, pdb["metadata"]["name"]
    for name, deployment in documind(k8s).items():
        assert sum(selects(p["spec"]["selector"]["matchLabels"], deployment) for p in pdbs) == 1, name


def test_the_hpa_scales_the_gateway_on_cpu(k8s: Rendered) -> None:
    (hpa,) = k8s.of("HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", documind(k8s)["gateway"]["metadata"]["name"])
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert "cpu" in container(documind(k8s)["gateway"])["resources"]["requests"]


def scaled_objects(k8s: Rendered) -> dict[Stage, Obj]:
    """The ScaledObjects by the stage of the Deployment they scale."""
    deployments = k8s.of("Deployment")
    result: dict[Stage, Obj] = {}
    for so in k8s.of("ScaledObject").values():
        target = so["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        (stage,) = [s for s in STAGES if s == component(deployments[target["name"]])]
        result[stage] = so
    return result


def test_each_stage_scales_on_its_interactive_stream_in_every_partition(k8s: Rendered) -> None:
    objects = scaled_objects(k8s)
    assert set(objects) == set(STAGES)
    auth = set(k8s.of("TriggerAuthentication"))
    kind = "redis-cluster-streams" if k8s.cluster else "redis-streams"
    for stage, so in objects.items():
        triggers = [t for t in so["spec"]["triggers"] if t["type"].startswith("redis")]
        expected = [Partition(i).stream(stage, INTERACTIVE) for i in range(k8s.partitions)]
        assert [t["metadata"]["stream"] for t in triggers] == expected, stage
        for t in triggers:
            assert t["type"] == kind and t["authenticationRef"]["name"] in auth
            # XLEN, not the group's lag: Valkey reports no lag (KEDA reads -1) whenever a
            # later batch is acknowledged before an earlier one (test below).
            assert "consumerGroup" not in t["metadata"] and int(t["metadata"]["streamLength"]) > 0


def test_bulk_lanes_scale_on_the_workers_summed_backlog_gauge(k8s: Rendered) -> None:
    (ns,) = k8s.of("Namespace")
    gauge = metrics.STREAM_LENGTH
    assert gauge._labelnames == ("stage", "lane")
    for stage, so in scaled_objects(k8s).items():
        bulk = [t for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
        if BULK not in STAGE_LANES[stage]:
            assert not bulk, stage
            continue
        (trigger,) = bulk
        query = trigger["metadata"]["query"]
        assert f'{gauge._name}{{namespace="{ns}", stage="{stage}", lane="{BULK}"}}' in query
        # Every replica exports the same backlog: the max over pods, summed over partitions.
        assert query.startswith("sum(max by (partition) (")
        # The gauge comes from the workers themselves: with none running nobody sees bulk work.
        assert so["spec"]["minReplicaCount"] >= 1, stage


def formula_value(formula: str, values: dict[str, float]) -> float:
    tree = ast.parse(formula, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Add, ast.Div, ast.Name, ast.Load, ast.Constant)
    assert all(isinstance(node, allowed) for node in ast.walk(tree)), formula
    return float(eval(compile(tree, "<formula>", "eval"), {"__builtins__": {}}, values))


def test_the_formula_adds_each_trigger_against_its_own_target(k8s: Rendered) -> None:
    for stage, so in scaled_objects(k8s).items():
        spec = so["spec"]
        modifiers = spec["advanced"]["scalingModifiers"]
        assert (modifiers["target"], modifiers["metricType"]) == ("1", "AverageValue")
        activation = float(modifiers["activationTarget"])
        targets = {
            t["name"]: float(t["metadata"].get("streamLength") or t["metadata"]["threshold"])
            for t in spec["triggers"]
        }
        idle = dict.fromkeys(targets, 0.0)
        assert formula_value(modifiers["formula"], idle) <= activation, stage
        for name, target in targets.items():
            # One replica per target's worth of backlog in any trigger; one entry activates.
            assert formula_value(modifiers["formula"], {**idle, name: target}) == pytest.approx(1), name
            assert formula_value(modifiers["formula"], {**idle, name: 1}) > activation, name
        assert 1 <= max(spec["minReplicaCount"], 1) <= spec["maxReplicaCount"]


def test_group_lag_is_unknown_when_batches_finish_out_of_order(valkey: Any) -> None:
    """Why the triggers read XLEN: DocuMind deletes what it acknowledges, and a group's
    lag is then NULL (KEDA's go-redis reads -1) while an earlier batch is still pending."""
    stream, group = Partition(0).stream("embedder", INTERACTIVE), "documind:embedder"
    valkey.xgroup_create(stream, group, id="0", mkstream=True)
    ids = [valkey.xadd(stream, {"data": str(i)}) for i in range(5)]
    valkey.xreadgroup(group, "a", {stream: ">"}, count=2)
    valkey.xreadgroup(group, "b", {stream: ">"}, count=2)
    valkey.xack(stream, group, *ids[2:4])
    valkey.xdel(stream, *ids[2:4])
    (info,) = valkey.xinfo_groups(stream)
    assert info["lag"] is None
    assert valkey.xlen(stream) == 3  # one waiting, two in flight
