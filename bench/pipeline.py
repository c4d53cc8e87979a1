"""DocuMind's four stages with no-op handlers against the seed's RQ queue, in one run.

    .venv/bin/python -m bench.pipeline [--jobs N] [--rounds M] [--repeat R] [--replicas K] [--aof] [--quick]

``--help`` lists every option.

One valkey-server serves both systems.

DocuMind: the real gateway (uvicorn, ``python -m services.gateway``) and one
process per stage (embedder, retriever, generator), each the real ``Worker``
with a handler that hands every payload on unchanged (``bench.noop_stage``).

* throughput: N chat jobs submitted with ``JobStore.submit`` (the gateway's own
  call, bound to non-transactional pipelines of ``--submit-batch`` jobs) while
  the stages run; timed from the first submit to the last job's final write
  (the ``updated_at`` the generator stamps on the job hash).
* drain: the same N queued while the stage processes are stopped (SIGSTOP),
  timed from SIGCONT: a full queue drained, the way RQ's figure is taken.
* http-ingress: jobs POSTed to /v1/chat by ``--http-concurrency`` keep-alive
  connections, timed to the last job's final write.
* round trip: ``POST /v1/chat`` + ``GET /v1/jobs/{id}?wait=5`` on one keep-alive
  connection, sequential, through all four stages.
* replicas: the end-to-end throughput again with ``--replicas`` processes per
  stage (one consumer group, distinct consumer names) against one process per
  stage, the two alternated.

RQ: ``rq.SimpleWorker`` (``bench.rq_worker``) running a module-level function
that does nothing.

* throughput: ``--rq-jobs`` jobs (default N/5, so that a run takes about as
  long as DocuMind's) enqueued with ``enqueue_many`` on pipelines, then a burst
  worker drains them (timed around ``work()``, in the worker process).
* round trip: ``enqueue`` + ``job.latest_result(timeout=5)`` (a blocking XREAD
  on the job's result stream) with a non-burst SimpleWorker running.

Both systems' round trips are measured in alternating blocks, and their
throughput runs alternate ``--repeat`` times (medians reported), so that load
from other processes on the machine falls on both alike. Every child process
is stopped on exit, Ctrl-C and SIGTERM included.

This module is the command line and the run; the DocuMind side is
``bench.pipeline_documind``, the RQ side ``bench.pipeline_rq``, the figures and the
summary ``bench.pipeline_report``, the child processes ``bench.children``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.children import ROOT, Children
from bench.common import Latency, loadavg, sigterm_as_interrupt
from bench.pipeline_documind import COLLECTION, JOB_TIMEOUT_S, P0, QUESTION, DocuMind
from bench.pipeline_report import LATENCY_TARGET, THROUGHPUT_TARGET, Report, Throughput, median_run, summary
from bench.pipeline_rq import RQ, RQ_QUEUE
from bench.stack import use_bench_key
from libs.common.valkey_server import ValkeyServer

__all__ = [
    "BLOCK",
    "COLLECTION",
    "DEFAULT_VARIANTS",
    "JOB_TIMEOUT_S",
    "LATENCY_TARGET",
    "P0",
    "QUESTION",
    "ROOT",
    "RQ",
    "RQ_QUEUE",
    "THROUGHPUT_TARGET",
    "Children",
    "DocuMind",
    "Report",
    "Throughput",
    "alternate_round_trips",
    "main",
    "measure_replicas",
    "median_run",
    "parse_args",
    "parse_variant",
    "run",
    "summary",
    "variant_name",
]

BLOCK = 50  # round trips per alternating block


# --- the run ----------------------------------------------------------------------------------


def alternate_round_trips(dm: DocuMind, rq: RQ, rounds: int) -> tuple[Latency, Latency]:
    """Round trips of both systems in alternating blocks of ``BLOCK``."""
    mine: list[float] = []
    theirs: list[float] = []
    while len(mine) < rounds:
        n = min(BLOCK, rounds - len(mine))
        mine += dm.round_trips(n)
        theirs += rq.round_trips(n)
    return Latency.of(mine), Latency.of(theirs)


def parse_variant(text: str) -> dict[str, str]:
    """``read_count=128,concurrency=4`` -> DOCUMIND_* environment."""
    env = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"expected key=value[,key=value], got {text!r}")
        env[f"DOCUMIND_{key.strip().upper()}"] = value.strip()
    return env


def variant_name(env: dict[str, str]) -> str:
    return ",".join(f"{k.removeprefix('DOCUMIND_').lower()}={v}" for k, v in env.items())


DEFAULT_VARIANTS = ("read_count=128,concurrency=4", "read_count=8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput run (default 20000)")
    p.add_argument("--rounds", type=int, default=500, help="round trips measured per system (default 500)")
    p.add_argument("--repeat", type=int, default=3, help="throughput runs per system, alternated (default 3)")
    p.add_argument("--rq-jobs", type=int, help="jobs per RQ throughput run (default: --jobs / 5)")
    p.add_argument("--warmup", type=int, default=50, help="round trips (and 20x jobs) run first")
    p.add_argument("--submit-batch", type=int, default=500, help="jobs per submit pipeline (default 500)")
    p.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        metavar="KEY=V[,KEY=V]",
        help="other DocuMind worker settings to measure, e.g. read_count=128,concurrency=4 "
        f"(repeatable; default: {' and '.join(DEFAULT_VARIANTS)})",
    )
    p.add_argument("--no-variants", action="store_true", help="measure the default worker settings only")
    p.add_argument("--http-jobs", type=int, default=5000, help="jobs of the HTTP-ingress run (0: skip it)")
    p.add_argument("--http-concurrency", type=int, default=16, help="connections of the HTTP-ingress run")
    p.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="also measure end-to-end throughput with this many processes per stage against one, "
        "alternated --repeat times (default 2; 0 or 1: skip)",
    )
    p.add_argument("--aof", action="store_true", help="valkey with appendonly yes (appendfsync everysec)")
    p.add_argument("--rq-log-level", default="WARNING", help="RQ worker logging (RQ's own default is INFO)")
    p.add_argument("--profile", metavar="DIR", help="cProfile each stage of the default settings into DIR")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--quick", action="store_true", help="a smoke run: 3000 jobs, 200 rounds, no variants")
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds, args.repeat, args.http_jobs, args.no_variants = 3000, 200, 1, 1000, True
    if args.rq_jobs is None:
        args.rq_jobs = max(1, args.jobs // 5)
    if args.variant is None:
        args.variant = [] if args.no_variants else [parse_variant(v) for v in DEFAULT_VARIANTS]
    if min(args.jobs, args.rq_jobs, args.repeat, args.submit_batch) < 1 or args.rounds < 2:
        p.error("--jobs, --rq-jobs, --repeat and --submit-batch must be positive, --rounds at least 2")
    return args


def run(args: argparse.Namespace) -> Report:
    report = Report(
        config={
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "command": " ".join(["python -m bench.pipeline", *sys.argv[1:]]),
            "jobs": args.jobs,
            "rq_jobs": args.rq_jobs,
            "rounds": args.rounds,
            "repeat": args.repeat,
            "replicas": args.replicas,
            "valkey_appendonly": "yes (appendfsync everysec)" if args.aof else "no",
            "rq_log_level": args.rq_log_level,
            "loadavg_1m_start": loadavg(),
        }
    )
    tmp = Path(tempfile.mkdtemp(prefix="documind-bench-"))
    ok = False
    use_bench_key()
    server = ValkeyServer(tmp / "valkey", appendonly=args.aof)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DOCUMIND_DATA_DIR": str(tmp / "data")}
    children = Children(tmp, env)
    try:
        server.start()
        assert server.proc is not None
        children.watched["valkey"] = server.proc.pid
        env["DOCUMIND_VALKEY_URL"] = server.url
        aof = report.config["valkey_appendonly"]
        print(f"valkey-server on {server.url}, appendonly {aof}; logs in {tmp}")
        dm = DocuMind(children, server.url)
        rq = RQ(children, server.url, args.rq_log_level)
        dm.reset()
        dm.start_gateway()
        rq.start_worker()
        rq.round_trips(args.warmup)
        rq_lat: list[Latency] = []
        rq_runs: list[Throughput] = []
        for n, cfg in enumerate([{}, *args.variant]):
            name = variant_name(cfg) or "default"
            label = "documind" if n == 0 else f"documind[{name}]"
            print(f"DocuMind, worker settings: {name}", flush=True)
            profile_dir = Path(args.profile) if args.profile and n == 0 else None
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
            dm.reset()
            dm.start_workers(profile_dir, **cfg)
            dm.wait_ready()
            dm.round_trips(args.warmup)
            dm.throughput(args.warmup * 20, args.submit_batch)
            lat, rq_l = alternate_round_trips(dm, rq, args.rounds)
            rq_lat.append(rq_l)
            report.add(label, lat=lat)
            report.rows[label]["rq_rt_p50_ms_alongside"] = round(rq_l.p50_ms, 3)
            if n == 0:
                # The headline throughputs, DocuMind's and RQ's runs alternated: RQ runs
                # ``--rq-jobs`` (~ as long as a DocuMind run), so both meet the same load.
                e2e: list[Throughput] = []
                drains: list[Throughput] = []
                for _ in range(args.repeat):
                    e2e.append(dm.throughput(args.jobs, args.submit_batch))
                    drains.append(dm.throughput(args.jobs, args.submit_batch, drain=True))
                    rq_runs.append(rq.throughput(args.rq_jobs, args.submit_batch))
                report.add(label, tput=median_run(e2e), runs=e2e)
                report.add(f"{label} drain", tput=median_run(drains), runs=drains)
                if args.http_jobs:
                    http_tput = dm.throughput_http(args.http_jobs, args.http_concurrency)
                    report.add(f"{label} http-ingress", tput=http_tput)
            else:
                report.add(label, tput=dm.throughput(args.jobs, args.submit_batch))
            dm.stop_workers()
        if args.replicas > 1:
            measure_replicas(dm, report, args)
        children.stop(["gateway", "rq-worker"])
        dm.reset()
        # RQ's round trips alternated with the default settings' give the headline p50.
        report.add("rq", tput=median_run(rq_runs), runs=rq_runs, lat=rq_lat[0])
        ok = True
    finally:
        children.stop_all()
        server.stop()
        report.config["loadavg_1m_end"] = loadavg()
        if ok and not args.profile:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def measure_replicas(dm: DocuMind, report: Report, args: argparse.Namespace) -> None:
    """End-to-end throughput with one and with ``--replicas`` processes per stage (default
    settings), the two alternated ``--repeat`` times; each start is warmed up first."""
    print(f"DocuMind, 1 and {args.replicas} processes per stage, alternated", flush=True)
    runs: dict[int, list[Throughput]] = {1: [], args.replicas: []}
    for _ in range(args.repeat):
        for count, done in runs.items():
            dm.reset()
            dm.start_workers(replicas=count)
            try:
                dm.wait_ready()
                dm.throughput(args.warmup * 20, args.submit_batch)
                done.append(dm.throughput(args.jobs, args.submit_batch))
            finally:
                dm.stop_workers()
    for count, done in runs.items():
        report.add(f"documind replicas={count}", tput=median_run(done), runs=done)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            report = run(args)
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130
    print(summary(report))
    if args.json:
        data = {"config": report.config, "rows": report.rows}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
