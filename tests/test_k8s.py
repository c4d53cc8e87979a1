"""deploy/k8s: what ``kubectl kustomize`` renders is valid and does what deploy/k8s/README.md says.

Each variant (the base, and the cluster overlay) is rendered once with ``kubectl
kustomize`` (``tests/k8s_render.py``). Kubernetes objects are checked against the API
schemas of a pinned Kubernetes release (the ``kubernetes-validate`` package ships
them), strictly: an unknown field is an error. KEDA's objects are checked against the
openAPIV3Schema of the CRDs kept in deploy/k8s/schemas, unknown fields included (the
API server would drop them silently). Then what a user relies on: probes, resources,
shutdown grace, scraped metrics ports, real settings only, Secrets by reference only,
the retriever on a Qdrant server, disruption budgets and the gateway's HPA. The
ScaledObjects' triggers and formulas are tests/test_k8s_scaling.py's.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from libs.common.cli import build_parser
from libs.common.constants import STAGES
from libs.common.settings import (
    CommonSettings,
    EmbedderSettings,
    GatewaySettings,
    GeneratorSettings,
    RetrieverSettings,
    WorkerSettings,
)
from tests.k8s_render import (
    K8S,
    ROOT,
    VARIANTS,
    Obj,
    Rendered,
    container,
    containers,
    documind,
    render,
    selects,
    variant,
)

# The Kubernetes release whose API schemas the objects must satisfy.
KUBERNETES_VERSION = "1.33.0"
KEDA_SCHEMAS = {
    "ScaledObject": K8S / "schemas/keda-scaledobject-v2.20.2.yaml",
    "TriggerAuthentication": K8S / "schemas/keda-triggerauthentication-v2.20.2.yaml",
}
SETTINGS: dict[str, type[CommonSettings]] = {
    "gateway": GatewaySettings,
    "embedder": EmbedderSettings,
    "retriever": RetrieverSettings,
    "generator": GeneratorSettings,
}
HEALTHCHECK = ["python", "-m", "libs.common.healthcheck"]


@pytest.fixture(params=list(VARIANTS))
def k8s(request: pytest.FixtureRequest) -> Rendered:
    return variant(request.param)


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


# --- disruption budgets and the gateway's autoscaler --------------------------------


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


# --- the blob sweep -----------------------------------------------------------------


def test_the_blob_sweep_runs_daily_once_at_a_time_with_the_services_store(k8s: Rendered) -> None:
    import importlib.util

    (cron,) = k8s.of("CronJob").values()
    assert len(cron["spec"]["schedule"].split()) == 5 and cron["spec"]["schedule"].split()[2:] == ["*"] * 3
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    template = cron["spec"]["jobTemplate"]["spec"]["template"]
    (sweep,) = template["spec"]["containers"]
    command = sweep["command"]
    assert command[:3] == ["python", "-m", "libs.common.blobstore.sweep"]
    assert importlib.util.find_spec(command[2]) is not None
    # An hour at least: an upload between its put and its SUBMIT must not be swept.
    assert float(command[command.index("--older-than") + 1]) >= 3600
    # The gateway's image, user and store: what the services wrote is what it sweeps.
    gateway = container(documind(k8s)["gateway"])
    assert sweep["image"] == gateway["image"]
    assert (
        template["spec"]["securityContext"]
        == documind(k8s)["gateway"]["spec"]["template"]["spec"]["securityContext"]
    )
    env, gateway_env = k8s.env(sweep), k8s.env(gateway)
    fields = {f.upper() for f in CommonSettings.model_fields}
    for var in env:
        assert var.removeprefix("DOCUMIND_") in fields, f"{var} is not a setting the sweep reads"
    shared = ("DOCUMIND_VALKEY_URL", "DOCUMIND_VALKEY_CLUSTER", "DOCUMIND_BLOB_STORE", "DOCUMIND_S3_BUCKET")
    for var in shared:
        assert env.get(var) == gateway_env.get(var), var
    for var in ("DOCUMIND_VALKEY_URL", "DOCUMIND_S3_ACCESS_KEY_ID", "DOCUMIND_S3_SECRET_ACCESS_KEY"):
        assert "secretKeyRef" in env[var], var
    assert {"cpu", "memory"} <= set(sweep["resources"]["requests"])
    assert "memory" in sweep["resources"]["limits"]
