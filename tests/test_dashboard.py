"""The Grafana dashboard, its provisioning and Prometheus's scrape config fit the services.

Every dashboard query must be valid PromQL (parsed by promql-parser after Grafana's
variables are filled in) and may only name series that the services' modules
register with prometheus_client, so a panel never shows "No data" for a series
that does not exist.
"""

from __future__ import annotations

import importlib
import json
import re
import runpy
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import REGISTRY, Gauge

from libs.common import metrics

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy/grafana"
DASHBOARD = GRAFANA / "dashboards/documind.json"
PROMETHEUS_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
APP_SERVICES = ("gateway", "embedder", "retriever", "generator")
# The modules whose import registers every series a DocuMind process exposes.
EXPOSING_MODULES = (
    "libs.common.metrics",
    "libs.common.worker",
    "services.gateway.app",
    "services.embedder.main",
    "services.retriever.main",
    "services.generator.main",
)
# What Grafana puts in place of its built-in interval variables before querying.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# The series a family of each type exposes (prometheus_client's exposition).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
# Functions that only make sense over counters (monotonic series).
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}


@cache
def exposed() -> dict[str, str]:
    """Every series name the services expose, mapped to its family's type."""
    for module in EXPOSING_MODULES:
        importlib.import_module(module)
    series = {}
    for family in REGISTRY.collect():
        for suffix in SUFFIXES[family.type]:
            series[family.name + suffix] = family.type
    return series


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def graph_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def variables() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = dashboard()["templating"]["list"]
    return result


def expressions() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    for panel in graph_panels():
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def substitute(expr: str) -> str:
    """The query as Grafana sends it: built-in intervals and dashboard variables filled in."""
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    for var in variables():
        expr = re.sub(r"\$\{?" + re.escape(var["name"]) + r"\b\}?", var.get("allValue") or ".*", expr)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def selectors(expr: promql_parser.Expr) -> Iterator[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    yield from found


def metric_name(selector: promql_parser.VectorSelector) -> str:
    if selector.name:
        return selector.name
    names = [m.value for m in selector.matchers.matchers if m.name == "__name__"]
    assert len(names) == 1, f"{selector}: no single metric name"
    return names[0]


def referenced(expr: str) -> set[str]:
    """Every metric name a (Grafana) PromQL expression selects."""
    return {metric_name(s) for s in selectors(promql_parser.parse(substitute(expr)))}


def calls(expr: promql_parser.Expr) -> Iterator[promql_parser.Call]:
    found: list[promql_parser.Call] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.Call):
            found.append(node)

    promql_parser.walk(expr, visit)
    yield from found


# --- the dashboard is generated, parses, and names only real series --------------------


def test_dashboard_json_is_what_the_generator_writes() -> None:
    generator = runpy.run_path(str(GRAFANA / "dashboard.py"))
    assert DASHBOARD.read_text() == generator["render"](), "run: python deploy/grafana/dashboard.py"


def test_metric_names_are_read_from_the_query() -> None:
    # The extraction the next tests rely on: metric names, not functions, labels or variables.
    expr = (
        "histogram_quantile(0.95, sum by (le, stage) "
        '(rate(a_seconds_bucket{stage=~"$stage"}[$__rate_interval])))'
        ' / on (stage) sum by (stage) (b_total{outcome="done"}) + {__name__="c"}'
    )
    assert referenced(expr) == {"a_seconds_bucket", "b_total", "c"}


def test_every_query_is_valid_promql() -> None:
    for title, expr in expressions():
        try:
            promql_parser.parse(substitute(expr))
        except ValueError as err:
            raise AssertionError(f"{title}: {expr}: {err}") from err


def test_every_queried_series_is_exposed_by_a_service() -> None:
    assert "documind_messages_total" in exposed(), "the services' metrics were not imported"
    missing = {}
    for title, expr in expressions():
        unknown = referenced(expr) - exposed().keys()
        if unknown:
            missing[title] = sorted(unknown)
    assert not missing, f"series no service exposes: {missing}"


def test_variable_queries_name_exposed_series() -> None:
    for var in variables():
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"{var['name']}: {query}"
        assert match[1] in exposed()


def test_counter_functions_are_applied_to_counters_only() -> None:
    # rate() of a gauge is a silent bug: it graphs nonsense instead of failing.
    for title, expr in expressions():
        for call in calls(promql_parser.parse(substitute(expr))):
            if call.func.name in COUNTER_FUNCTIONS:
                (matrix,) = call.args
                name = metric_name(matrix.vector_selector)
                assert name.endswith(("_total", "_bucket", "_count", "_sum")), f"{title}: {name}"
                assert exposed()[name] in {"counter", "histogram", "summary"}, f"{title}: {name}"
            if call.func.name == "histogram_quantile":
                for selector in selectors(call.args[1]):
                    name = metric_name(selector)
                    assert name.endswith("_bucket") and exposed()[name] == "histogram", f"{title}: {name}"


def partitioned_gauges() -> set[str]:
    """The gauges with a ``partition`` label: each replica of a stage reports the same
    figure for every partition (the backlog gauges, the dead letters)."""
    return {g._name for g in vars(metrics).values() if isinstance(g, Gauge) and "partition" in g._labelnames}


def unwrap(node: promql_parser.Expr) -> promql_parser.Expr:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def per_replica_max_summed(expr: promql_parser.Expr) -> list[str]:
    """The partitioned gauges ``expr`` reads as sum(max by (partition, ...) (gauge{...}))."""
    aggregates: list[promql_parser.AggregateExpr] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            aggregates.append(node)

    promql_parser.walk(expr, visit)
    found = []
    for outer in aggregates:
        inner = unwrap(outer.expr)
        if str(outer.op) != "sum" or not isinstance(inner, promql_parser.AggregateExpr):
            continue
        by = inner.modifier
        selector = unwrap(inner.expr)
        if (
            str(inner.op) == "max"
            and by is not None
            and str(by.type).endswith("By")
            and "partition" in by.labels
            and isinstance(selector, promql_parser.VectorSelector)
        ):
            found.append(metric_name(selector))
    return found


def test_partitioned_gauges_take_the_max_over_replicas_then_add_up_partitions() -> None:
    # A sum over replicas counts the backlog once per replica; a max over partitions
    # keeps only the largest partition's.
    gauges = partitioned_gauges()
    assert {"documind_stream_length", "documind_consumer_group_lag", "documind_pending_messages"} <= gauges
    queried = set()
    for title, expr in expressions():
        tree = promql_parser.parse(substitute(expr))
        reads = [metric_name(s) for s in selectors(tree) if metric_name(s) in gauges]
        assert sorted(per_replica_max_summed(tree)) == sorted(reads), f"{title}: {expr}"
        queried |= set(reads)
    assert queried == gauges - {"documind_worker_heartbeat_timestamp_seconds"}
    wrong = promql_parser.parse('max by (stage, lane) (documind_stream_length{stage=~".*"})')
    assert per_replica_max_summed(wrong) == []


def test_dashboard_covers_the_issue_panels() -> None:
    queried = set().union(*(referenced(expr) for _, expr in expressions()))
    assert {
        "documind_messages_total",
        "documind_stage_seconds_bucket",
        "documind_queue_wait_seconds_bucket",
        "documind_dead_letters_total",
        "documind_http_requests_total",
    } <= queried
    quantiles = {
        (metric_name(s), call.args[0].val)
        for _, expr in expressions()
        for call in calls(promql_parser.parse(substitute(expr)))
        if call.func.name == "histogram_quantile"
        for s in selectors(call.args[1])
    }
    for metric in ("documind_stage_seconds_bucket", "documind_queue_wait_seconds_bucket"):
        assert {(metric, 0.5), (metric, 0.95)} <= quantiles, f"p50 and p95 of {metric}"


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        columns = range(pos["x"], pos["x"] + pos["w"])
        cells = {(x, y) for x in columns for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


# --- provisioning ---------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def grafana_mounts() -> dict[str, str]:
    """Container path -> repository path of Grafana's bind mounts."""
    mounts = {}
    for volume in compose()["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source.removeprefix("./")
    return mounts


def test_datasources_point_at_the_compose_services() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())
    by_uid = {d["uid"]: d for d in provisioned["datasources"]}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["jaeger"]["type"] == "jaeger"
    assert by_uid["jaeger"]["url"] == "http://jaeger:16686"
    assert {"prometheus", "jaeger"} <= set(compose()["services"])
    used = {p["datasource"]["uid"] for p in graph_panels()}
    used |= {t["datasource"]["uid"] for p in graph_panels() for t in p["targets"]}
    used |= {v["datasource"]["uid"] for v in variables()}
    assert used <= set(by_uid)


def test_dashboard_provider_reads_the_mounted_dashboards() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yaml").read_text())
    mounts = grafana_mounts()
    assert mounts["/etc/grafana/provisioning"] == "deploy/grafana/provisioning"
    (provider,) = provisioned["providers"]
    assert mounts[provider["options"]["path"]] == "deploy/grafana/dashboards"
    home = compose()["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    directory, filename = home.rsplit("/", 1)
    assert (ROOT / mounts[directory] / filename) == DASHBOARD


# --- Prometheus -----------------------------------------------------------------------


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert len(jobs) == len(set(jobs)), "job names are unique"
    return {job["job_name"]: job for job in config["scrape_configs"]}


def listening_port(service: str) -> int:
    env = compose()["services"][service]["environment"]
    # Every service, the gateway too, serves /metrics on its metrics port, reachable
    # over the compose network (metrics listen on loopback unless told otherwise).
    assert env["DOCUMIND_METRICS_HOST"] == "0.0.0.0", service
    return int(env["DOCUMIND_METRICS_PORT"])


def test_prometheus_finds_every_replica_of_every_service() -> None:
    jobs = scrape_jobs()
    for service in APP_SERVICES:
        # Scaled replicas share the service's DNS name, one A record each.
        (sd,) = jobs[service]["dns_sd_configs"]
        assert sd["names"] == [service]
        assert sd["type"] == "A"
        assert sd["port"] == listening_port(service), service
        assert "static_configs" not in jobs[service]


def test_prometheus_targets_are_compose_services() -> None:
    services = set(compose()["services"])
    for name, job in scrape_jobs().items():
        hosts = [n for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        hosts += [t.rsplit(":", 1)[0] for sc in job.get("static_configs", []) for t in sc["targets"]]
        assert hosts, name
        assert set(hosts) <= services | {"localhost"}, name


def test_the_gateway_api_port_is_not_the_scraped_one() -> None:
    env = compose()["services"]["gateway"]["environment"]
    assert env["DOCUMIND_PORT"] != env["DOCUMIND_METRICS_PORT"]
    assert "metrics_path" not in scrape_jobs()["gateway"]
