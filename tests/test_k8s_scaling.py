"""deploy/k8s: the ScaledObjects scale real Deployments on the streams libs/common/keys.py
names, in every partition, and on the bulk lanes' backlog gauge (deploy/k8s/README.md,
"Autoscaling"). Rendering is tests/k8s_render.py's.
"""

from __future__ import annotations

import ast
from typing import Any

import pytest

from libs.common import metrics
from libs.common.constants import BULK, INTERACTIVE, STAGE_LANES, STAGES
from libs.common.keys import Partition, Stage
from tests.k8s_render import VARIANTS, Obj, Rendered, component, variant


@pytest.fixture(params=list(VARIANTS))
def k8s(request: pytest.FixtureRequest) -> Rendered:
    return variant(request.param)


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
    # Each replica reports every partition's bulk backlog, its tenants' streams added up,
    # as a series of its own (libs/common/maintenance.py).
    assert gauge._labelnames == ("stage", "lane", "partition")
    for stage, so in scaled_objects(k8s).items():
        bulk = [t for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
        if BULK not in STAGE_LANES[stage]:
            assert not bulk, stage
            continue
        (trigger,) = bulk
        # The max over replicas (they all report the same figure), summed over partitions.
        selector = f'{gauge._name}{{namespace="{ns}", stage="{stage}", lane="{BULK}"}}'
        assert trigger["metadata"]["query"] == f"sum(max by (partition) ({selector}))", stage
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
