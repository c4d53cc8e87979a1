"""The ``documind`` command: run the embedded stack, ingest files, ask questions."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from libs.common.admin_key import auth_headers, resolve_api_key
from libs.common.cli_output import console, error_detail, print_table
from libs.common.status import JobStatus, is_final

DEFAULT_URL = os.environ.get("DOCUMIND_URL", "http://127.0.0.1:8000")
DEFAULT_DATA_DIR = os.environ.get("DOCUMIND_DATA_DIR", ".documind")


def _headers(args: argparse.Namespace) -> dict[str, str]:
    """``Authorization: Bearer`` with --api-key, DOCUMIND_API_KEY or the data dir's admin.key."""
    return auth_headers(resolve_api_key(args.api_key, Path(args.data_dir)))


def _wait_job(client: httpx.Client, url: str, job_id: str, timeout_s: float) -> dict[str, Any]:
    """The job once its status is final (done, failed, expired, cancelled), or as it is at the deadline.

    A job the gateway no longer knows (4xx) ends the wait with that as the job's status; a
    server error (5xx) is asked again a second later.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        wait = max(0.0, min(20.0, deadline - time.monotonic()))
        resp = client.get(f"{url}/v1/jobs/{job_id}", params={"wait": wait})
        if 400 <= resp.status_code < 500:
            return {"status": f"failed ({resp.status_code})", "error": error_detail(resp)}
        job: dict[str, Any] = resp.json() if resp.status_code == 200 else {}
        if resp.status_code != 200:  # the gateway restarting, say: ask again shortly
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if is_final(str(job.get("status", ""))) or time.monotonic() >= deadline:
            return job


def cmd_up(args: argparse.Namespace) -> int:
    from libs.common.supervisor import run_stack

    # A Valkey someone else runs (--valkey-url, else DOCUMIND_VALKEY_URL): none is started.
    valkey_url = args.valkey_url or os.environ.get("DOCUMIND_VALKEY_URL") or None
    extra_env = {"DOCUMIND_VALKEY_CLUSTER": "true"} if args.valkey_cluster else {}
    if args.valkey_cluster and valkey_url is None:
        print("documind: --valkey-cluster needs --valkey-url (a node of the cluster)", file=sys.stderr)
        return 2
    return run_stack(Path(args.data_dir), args.port, args.host, valkey_url=valkey_url, extra_env=extra_env)


def cmd_ingest(args: argparse.Namespace) -> int:
    from libs.common.ingest_cli import collect, ingest

    files = collect(args.paths, args.include, args.exclude)
    return ingest(args.url, args.collection, files, args.timeout, headers=_headers(args))


def cmd_ask(args: argparse.Namespace) -> int:
    with httpx.Client(timeout=30.0, headers=_headers(args)) as client:
        body: dict[str, Any] = {"question": args.question, "collection": args.collection}
        if args.top_k:
            body["top_k"] = args.top_k
        resp = client.post(f"{args.url}/v1/chat", json=body)
        if resp.status_code != 202:
            print(f"rejected ({resp.status_code}): {error_detail(resp)}", file=sys.stderr)
            return 1
        job = _wait_job(client, args.url, resp.json()["job_id"], args.timeout)
    if job.get("status") != JobStatus.DONE:
        print(f"{job.get('status')}: {job.get('error', '')}", file=sys.stderr)
        return 1
    result = job["result"]
    print(result["answer"])
    if result.get("citations"):
        print()
        for c in result["citations"]:
            print(f"[{c['n']}] {c['filename']}, page {c['page']}: {c['snippet'][:160]}")
    print(f"\n(mode: {result.get('mode')})")
    return 0


def cmd_collections(args: argparse.Namespace) -> int:
    resp = httpx.get(f"{args.url}/v1/collections", timeout=30, headers=_headers(args))
    if resp.status_code != 200:
        print(f"failed ({resp.status_code}): {error_detail(resp)}", file=sys.stderr)
        return 1
    rows = [
        [c["name"], str(c["documents"]), str(c["chunks"]), c["description"]]
        for c in resp.json()["collections"]
    ]
    print_table(console(), ["collection", "documents", "chunks", "description"], rows)
    return 0


def cmd_documents(args: argparse.Namespace) -> int:
    url = f"{args.url}/v1/collections/{args.collection}/documents"
    resp = httpx.get(url, timeout=30, headers=_headers(args))
    if resp.status_code != 200:
        print(f"failed ({resp.status_code}): {error_detail(resp)}", file=sys.stderr)
        return 1
    rows = [
        [
            d["filename"],
            d["document_id"],
            str(d["pages"] or ""),
            str(d["chunks"] or ""),
            d["status"],
            d["error"] or "",
        ]
        for d in resp.json()["documents"]
    ]
    print_table(console(), ["file", "document_id", "pages", "chunks", "status", "reason"], rows)
    return 0


def cmd_init_streams(args: argparse.Namespace) -> int:
    import asyncio

    from redis.exceptions import RedisClusterException, RedisError

    from libs.common.init_streams import init_streams
    from libs.common.sentinel import SentinelTarget
    from libs.common.service import connect
    from libs.common.settings import CommonSettings

    # DOCUMIND_VALKEY_URL, DOCUMIND_VALKEY_CLUSTER and DOCUMIND_PARTITIONS, as the services read them.
    settings = CommonSettings()
    partitions = args.partitions or settings.partitions
    if partitions < 1:
        print("documind: --partitions must be at least 1", file=sys.stderr)
        return 2

    async def run() -> int:
        client = connect(
            settings.valkey_url, 5.0, cluster=settings.valkey_cluster, sentinel=SentinelTarget.of(settings)
        )
        try:
            groups = await init_streams(client, partitions)
        finally:
            await client.aclose()
        for spec in groups:
            print(f"{spec.stream}\t{spec.group}")
        print(f"{len(groups)} consumer groups ready in {partitions} partition(s)")
        return 0

    try:
        return asyncio.run(run())
    except (RedisError, RedisClusterException) as exc:  # in Kubernetes the init container runs again
        print(f"documind: valkey: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="documind", description="DocuMind: ask your documents.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole stack on this machine (no Docker, no API key)")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--data-dir", default=".documind")
    up.add_argument(
        "--valkey-url",
        default=None,
        help="use this Valkey (or a node of a Valkey Cluster) instead of starting one; "
        "default: DOCUMIND_VALKEY_URL when set",
    )
    up.add_argument(
        "--valkey-cluster",
        action="store_true",
        help="the Valkey is a cluster (as DOCUMIND_VALKEY_CLUSTER=true)",
    )
    up.set_defaults(func=cmd_up)

    ingest = sub.add_parser("ingest", help="upload files and folders into a collection; wait until ready")
    ingest.add_argument("paths", nargs="+", help="files, and folders to search recursively")
    ingest.add_argument("--include", action="append", default=[], help="glob of files to take from folders")
    ingest.add_argument("--exclude", action="append", default=[], help="glob of files to skip")
    ingest.add_argument("--collection", required=True)
    ingest.add_argument("--url", default=DEFAULT_URL)
    ingest.add_argument("--timeout", type=float, default=600.0)
    ingest.set_defaults(func=cmd_ingest)

    ask = sub.add_parser("ask", help="ask a question about a collection")
    ask.add_argument("question")
    ask.add_argument("--collection", required=True)
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument("--url", default=DEFAULT_URL)
    ask.add_argument("--timeout", type=float, default=120.0)
    ask.set_defaults(func=cmd_ask)

    colls = sub.add_parser("collections", help="list the collections")
    colls.add_argument("--url", default=DEFAULT_URL)
    colls.set_defaults(func=cmd_collections)

    docs = sub.add_parser("documents", help="list the documents of a collection")
    docs.add_argument("collection")
    docs.add_argument("--url", default=DEFAULT_URL)
    docs.set_defaults(func=cmd_documents)
    init = sub.add_parser(
        "init-streams",
        help="create every partition's stage streams and consumer groups (before scaling workers from zero)",
    )
    init.add_argument(
        "--partitions", type=int, default=0, help="partitions (default: DOCUMIND_PARTITIONS, else 1)"
    )
    init.set_defaults(func=cmd_init_streams)

    for client_command in (ingest, ask, colls, docs):
        client_command.add_argument(
            "--api-key", help="API key (default: DOCUMIND_API_KEY, else the data dir's admin.key)"
        )
        client_command.add_argument(
            "--data-dir", default=DEFAULT_DATA_DIR, help="where `documind up` keeps admin.key"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except httpx.TransportError as exc:
        print(f"documind: cannot reach {getattr(args, 'url', DEFAULT_URL)}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
