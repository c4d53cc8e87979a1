"""The null-stage pipeline on a Valkey Cluster of 1, 2 and 3 primaries, and the cost of WAIT.

    .venv/bin/python -m bench.cluster [--jobs N] [--repeat R] [--partitions P] [--quick] [--json FILE]

``--help`` lists every option.

The stages are ``bench.pipeline``'s: one ``bench.noop_stage`` process per stage (the
real ``Worker``, a handler that hands every payload on), here with
``DOCUMIND_VALKEY_CLUSTER=true`` and ``DOCUMIND_PARTITIONS=P`` (default 12): one
collection per partition, the jobs round-robin over them, so each primary serves
jobs in proportion to the partitions it owns (reported: the partitions' slots hash
unevenly, 12 fall 6+6 on 2 primaries and 3+3+6 on 3; 6 would fall 1+1+4). N chat
jobs are queued with ``JobStore.submit`` (the gateway's own call),
``--submit-concurrency`` at a time, and timed from the first submit to the last job's
final write, as ``bench.pipeline``'s throughput.

* primaries: clusters of 1, 2 and 3 primaries without replicas
  (``libs.common.valkey_cluster``), all started first; the runs alternate between
  them ``--repeat`` times (medians reported). Every node's ``INFO cpu``
  (``used_cpu_sys`` + ``used_cpu_user``) is read before and after each run: Valkey
  CPU microseconds per job, per node and in all. All nodes and workers share one
  machine's cores, so more primaries do not add CPU here: the figures say what
  Valkey spends per job on each node (how the work divides), not how fast a cluster
  of real machines would go.
* wait: 3 primaries with a replica each; the stages with
  ``DOCUMIND_VALKEY_WAIT_REPLICAS=0`` and ``=1`` alternated (each COMMIT then waits
  for its replica; the bench's own submits send no WAIT: 3 of a job's 4 durable
  writes). Skipped, with a note, where the settings do not exist.

Every child process and node is stopped on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.common import loadavg, run_context, sigterm_as_interrupt, write_json
from bench.pipeline import JOB_TIMEOUT_S, QUESTION, Children, DocuMind, Throughput, median_run
from bench.stack import use_bench_key
from libs.common import constants, keys, slots
from libs.common.cluster_client import ready
from libs.common.envelope import Envelope
from libs.common.jobs import JobStore
from libs.common.service import connect
from libs.common.settings import CommonSettings
from libs.common.valkey_cluster import ValkeyCluster

WAIT_SETTING = "valkey_wait_replicas"  # DOCUMIND_VALKEY_WAIT_REPLICAS (libs/common/durability.py)


def collections_by_partition(partitions: int) -> dict[int, str]:
    """A collection name per partition (``bench-<i>``, the first that hashes there)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        name = f"bench-{i}"
        found.setdefault(keys.partition_for(keys.DEFAULT_TENANT, name, partitions).index, name)
        i += 1
    return found


def node_cpu(cluster: ValkeyCluster) -> dict[str, float]:
    """CPU seconds (system + user) each node has used, by ``primary-<port>``/``replica-<port>``."""
    out: dict[str, float] = {}
    for role, nodes in (("primary", cluster.primaries), ("replica", cluster.replicas)):
        for node in nodes:
            client = redis.Redis.from_url(node.url)
            try:
                info = client.info("cpu")
            finally:
                client.close()
            out[f"{role}-{node.port}"] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return out


def partitions_per_primary(cluster: ValkeyCluster, partitions: int) -> dict[str, int]:
    """How many of the partitions each primary serves (from its CLUSTER SHARDS)."""
    client = redis.Redis.from_url(cluster.url, decode_responses=True)
    try:
        shards = client.cluster("SHARDS")
    finally:
        client.close()
    owner: list[tuple[int, int, str]] = []
    for shard in shards:
        port = next(n["port"] for n in shard["nodes"] if n["role"] == "master")
        bounds = shard["slots"]
        owner += [(int(a), int(b), f"primary-{port}") for a, b in zip(bounds[::2], bounds[1::2], strict=True)]
    count = dict.fromkeys(sorted({name for _a, _b, name in owner}), 0)
    for index in range(partitions):
        slot = slots.key_slot(keys.Partition(index).key("x"))
        count[next(name for a, b, name in owner if a <= slot <= b)] += 1
    return count


class ClusterDocuMind(DocuMind):
    """``bench.pipeline``'s no-op stages against a cluster, with jobs in every partition."""

    def __init__(self, children: Children, cluster: ValkeyCluster, partitions: int) -> None:
        super().__init__(children, cluster.url)
        self.cluster = cluster
        self.r = redis.RedisCluster.from_url(cluster.url)  # type: ignore[assignment]
        self.collections = collections_by_partition(partitions)
        self.env = {
            "DOCUMIND_VALKEY_URL": cluster.url,
            "DOCUMIND_VALKEY_CLUSTER": "true",
            "DOCUMIND_PARTITIONS": str(partitions),
        }

    def start(self, **env: str) -> None:
        self.start_workers(None, 1, **self.env, **env)
        deadline = time.monotonic() + 60
        while not self._consumers_ready():
            self.children.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"stages not reading; logs in {self.children.logdir}")
            time.sleep(0.05)  # process start-up: nothing to block on yet

    def _consumers_ready(self) -> bool:
        for stage in constants.STAGES:
            for index in self.collections:
                try:
                    groups = self.r.xinfo_groups(keys.Partition(index).stream(stage, constants.INTERACTIVE))
                except redis.ResponseError:
                    return False
                if not any(int(g["consumers"]) >= self.replicas for g in groups):
                    return False
        return True

    def close(self) -> None:
        self.r.close()

    def run(self, jobs: int, concurrency: int) -> tuple[Throughput, dict[str, float]]:
        """One throughput run; also Valkey CPU microseconds per job, by node."""
        cpu0, node0 = self.children.cpu(self.workers), node_cpu(self.cluster)
        tput = asyncio.run(self._run(jobs, concurrency))
        cpu1, node1 = self.children.cpu(self.workers), node_cpu(self.cluster)
        tput.cpu_us = {k: round((cpu1[k] - cpu0[k]) / jobs * 1e6, 1) for k in cpu1}
        per_node = {k: round((node1[k] - node0[k]) / jobs * 1e6, 1) for k in node1}
        return tput, per_node

    async def _run(self, jobs: int, concurrency: int) -> Throughput:
        r = connect(self.url, JOB_TIMEOUT_S, cluster=True)
        try:
            await ready(r)
            start = time.time()
            ids = await self._submit(r, jobs, concurrency)
            end = await self._wait_all_partitions(r, ids)
        finally:
            await r.aclose()
        return Throughput(jobs, end - start)

    async def _submit(self, r: Any, jobs: int, concurrency: int) -> dict[int, list[str]]:
        """Queue ``jobs`` chats round-robin over the partitions, ``concurrency`` at a time.

        Each is one SUBMIT, as the gateway sends it (redis-py's cluster pipeline cannot
        run the registered script that ``bench.pipeline`` pipelines on one server).
        """
        payload = {"question": QUESTION, "query": QUESTION, "top_k": 5}
        store = JobStore(r)
        ids: dict[int, list[str]] = {i: [] for i in self.collections}
        order = list(self.collections.items())

        async def one(n: int) -> None:
            index, name = order[n % len(order)]
            env = Envelope.new("chat", name, dict(payload), JOB_TIMEOUT_S, partition=keys.Partition(index))
            if await store.submit(env, max_backlog=jobs + 1) != "ok":
                raise RuntimeError("a submit was refused (backlog full)")
            ids[index].append(env.job_id)

        for first in range(0, jobs, concurrency):
            await asyncio.gather(*(one(n) for n in range(first, min(first + concurrency, jobs))))
        return ids

    async def _wait_all_partitions(self, r: Any, ids: dict[int, list[str]]) -> float:
        """``DocuMind._wait_all`` per partition (one XREAD names one slot's streams)."""
        ends = [await self._wait_all(r, part) for part in ids.values() if part]
        return max(ends)


def measure_primaries(
    children: Children, clusters: dict[int, ValkeyCluster], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    runs: dict[int, list[tuple[Throughput, dict[str, float]]]] = {n: [] for n in clusters}
    for _ in range(args.repeat):
        for n, cluster in clusters.items():
            runs[n].append(one_run(children, cluster, args))
    rows = {f"{n} primaries": row(done) for n, done in runs.items()}
    for n, cluster in clusters.items():
        rows[f"{n} primaries"]["partitions_per_primary"] = partitions_per_primary(cluster, args.partitions)
    return rows


def measure_wait(children: Children, cluster: ValkeyCluster, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[tuple[Throughput, dict[str, float]]]] = {"0": [], "1": []}
    for _ in range(args.repeat):
        for replicas, done in runs.items():
            done.append(one_run(children, cluster, args, DOCUMIND_VALKEY_WAIT_REPLICAS=replicas))
    rows = {f"3 primaries + 3 replicas, WAIT_REPLICAS={k}": row(v) for k, v in runs.items()}
    for fig in rows.values():
        fig["partitions_per_primary"] = partitions_per_primary(cluster, args.partitions)
    no_wait, wait = (median_run([t for t, _ in runs[k]]) for k in ("0", "1"))
    return {"rows": rows, "throughput_wait_1_vs_0": round(wait.per_s / no_wait.per_s, 3)}


def one_run(
    children: Children, cluster: ValkeyCluster, args: argparse.Namespace, **env: str
) -> tuple[Throughput, dict[str, float]]:
    dm = ClusterDocuMind(children, cluster, args.partitions)
    try:
        dm.start(**env)
        dm.run(args.warmup, args.submit_concurrency)
        tput, nodes = dm.run(args.jobs, args.submit_concurrency)
    finally:
        dm.stop_workers()
        dm.close()
    label = ", ".join(f"{k.removeprefix('DOCUMIND_').lower()}={v}" for k, v in env.items())
    print(
        f"  {len(cluster.primaries)} primaries, {len(cluster.replicas)} replicas {label}: "
        f"{tput.per_s:,.0f} jobs/s; Valkey CPU us/job {sum(nodes.values()):.0f} ({nodes})",
        flush=True,
    )
    return tput, nodes


def row(runs: Sequence[tuple[Throughput, dict[str, float]]]) -> dict[str, Any]:
    """The median run's figures (by rate), with every run's rate."""
    tput, nodes = sorted(runs, key=lambda r: r[0].per_s)[(len(runs) - 1) // 2]
    primaries = {k: v for k, v in nodes.items() if k.startswith("primary")}
    return {
        "jobs": tput.jobs,
        "seconds": round(tput.seconds, 3),
        "jobs_per_s": round(tput.per_s, 1),
        "jobs_per_s_runs": [round(t.per_s, 1) for t, _ in runs],
        "valkey_cpu_us_per_job": nodes,
        "valkey_cpu_us_per_job_total": round(sum(nodes.values()), 1),
        "valkey_cpu_us_per_job_per_primary_mean": round(sum(primaries.values()) / len(primaries), 1),
        "stages_cpu_us_per_job": tput.cpu_us,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000, help="jobs per run (default 10000)")
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration, alternated (default 3)")
    p.add_argument("--warmup", type=int, default=500, help="jobs run first after each start (default 500)")
    p.add_argument("--partitions", type=int, default=12, help="DOCUMIND_PARTITIONS (default 12)")
    p.add_argument("--submit-concurrency", type=int, default=64, help="submits in flight (default 64)")
    p.add_argument("--no-wait", action="store_true", help="skip the WAIT runs")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--quick", action="store_true", help="a smoke run: 600 jobs, 1 run each, 50 warm-up")
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.repeat, args.warmup = 600, 1, 50
    if min(args.jobs, args.repeat, args.warmup, args.partitions, args.submit_concurrency) < 1:
        p.error("--jobs, --repeat, --warmup, --partitions and --submit-concurrency must be positive")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = {**run_context("bench.cluster"), "jobs": args.jobs, "repeat": args.repeat}
    config.update(partitions=args.partitions, valkey_appendonly="yes (appendfsync everysec)")
    figures: dict[str, Any] = {"config": config}
    tmp = Path(tempfile.mkdtemp(prefix="documind-bench-cluster-"))
    use_bench_key()
    children = Children(tmp, {**os.environ, "PYTHONUNBUFFERED": "1", "DOCUMIND_DATA_DIR": str(tmp / "data")})
    clusters: dict[int, ValkeyCluster] = {}
    ok = False
    try:
        for n in (1, 2, 3):
            clusters[n] = ValkeyCluster(tmp / f"primaries-{n}", primaries=n, replicas=0).start()
        print(f"clusters of 1, 2, 3 primaries (no replicas); logs in {tmp}", flush=True)
        figures["primaries"] = measure_primaries(children, clusters, args)
        for cluster in clusters.values():
            cluster.stop()
        if args.no_wait:
            figures["wait"] = "skipped (--no-wait)"
        elif WAIT_SETTING not in CommonSettings.model_fields:
            figures["wait"] = "skipped: DOCUMIND_VALKEY_WAIT_REPLICAS does not exist in this tree"
            print(figures["wait"], flush=True)
        else:
            clusters[0] = ValkeyCluster(tmp / "replicated", primaries=3, replicas=1).start()
            print("3 primaries + 3 replicas, WAIT_REPLICAS 0 and 1 alternated", flush=True)
            figures["wait"] = measure_wait(children, clusters[0], args)
        ok = True
    finally:
        children.stop_all()
        for cluster in clusters.values():
            cluster.stop()
        config["loadavg_1m_end"] = loadavg()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
    return figures


def summary(figures: dict[str, Any]) -> str:
    lines = ["", f"{'':44}{'jobs/s':>9}{'Valkey us/job':>15}{'per primary':>13}  partitions"]
    rows = dict(figures["primaries"])
    if isinstance(figures["wait"], dict):
        rows.update(figures["wait"]["rows"])
    for name, fig in rows.items():
        lines.append(
            f"{name:44}{fig['jobs_per_s']:>9,.0f}{fig['valkey_cpu_us_per_job_total']:>15,.0f}"
            f"{fig['valkey_cpu_us_per_job_per_primary_mean']:>13,.0f}  "
            + "+".join(str(n) for n in fig["partitions_per_primary"].values())
        )
    wait = figures["wait"]
    lines.append(
        f"WAIT_REPLICAS=1 / =0 throughput: {wait['throughput_wait_1_vs_0']:.2f}x"
        if isinstance(wait, dict)
        else f"WAIT: {wait}"
    )
    config = figures["config"]
    lines.append(f"1-minute load at start / end: {config['loadavg_1m_start']} / {config['loadavg_1m_end']}")
    lines.append("one machine: the figures are Valkey CPU per job per node, not a cluster's speed")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            figures = run(args)
    except KeyboardInterrupt:
        print("interrupted; child processes and nodes stopped", file=sys.stderr)
        return 130
    print(summary(figures))
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
