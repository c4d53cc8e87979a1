"""A/B of a benchmark: this checkout against another revision, alternated in one run.

    .venv/bin/python -m bench.ab --base REV --bench pipeline|ingest|latency [--rounds N] [--head REV]
        [--out DIR] [--json FILE] -- <arguments of the bench>

e.g. ``python -m bench.ab --base 0b7e55d --bench latency --rounds 3 -- --docs 600``.

REV is checked out with ``git worktree add --detach`` next to this checkout
(``../documind-ab-<sha>``, so that ``../shared/data`` resolves the same) and removed at the
end. The other side is this checkout's working tree as it is (uncommitted edits included),
or with ``--head REV`` a worktree of that revision. Round i runs the bench on both sides,
head first in even rounds and base first in odd ones, each as
``<this python> -m bench.<name> --json FILE <args>`` with the checkout as working
directory: ``-m`` puts it first on ``sys.path``, ahead of the venv's editable install,
which a process started the same way checks before the first run. Both sides use one ONNX
model file (``DOCUMIND_ONNX_MODEL_PATH``; default this checkout's), so nothing is exported.

Prints, per headline figure, the median of each side's runs and head / base (which way is
better is said), the CPU model and flags and the load averages of the runs. Each run's
output and JSON stay in ``--out`` (default: a new temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from bench.common import loadavg, markdown_table, write_json

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / ".documind" / "models" / "all-MiniLM-L6-v2-int8.onnx"
SIDES = ("head", "base")
TOLERANCE = 0.05  # the target: within 5 %

Getter = Callable[[dict[str, Any]], float | None]


def _find(d: dict[str, Any], pattern: str, key: str) -> Any:
    """``key`` of the first row whose name matches ``pattern`` (a shell pattern)."""
    rows: dict[str, dict[str, Any]] = d.get("latency", d).get("rows", {})  # latency's JSON nests them
    return next((row.get(key) for name, row in rows.items() if fnmatch(name, pattern)), None)


def _row(pattern: str, key: str) -> Getter:
    return lambda d: _find(d, pattern, key)


def _cpu_sum(pattern: str, key: str) -> Getter:
    """The sum over the service processes (the bench's own process left out)."""

    def get(d: dict[str, Any]) -> float | None:
        cpu = _find(d, pattern, key)
        return sum(v for k, v in cpu.items() if k != "bench") if cpu else None

    return get


def _concurrent(kind: str) -> str:
    return f"{kind}, * concurrent clients"


# (figure, "higher"/"lower" is better, where in the bench's JSON)
FIGURES: dict[str, list[tuple[str, str, Getter]]] = {
    "pipeline": [
        ("DocuMind end to end, jobs/s", "higher", _row("documind", "jobs_per_s")),
        ("DocuMind drain, jobs/s", "higher", _row("documind drain", "jobs_per_s")),
        ("DocuMind HTTP ingress, jobs/s", "higher", _row("documind http-ingress", "jobs_per_s")),
        ("round trip p50, ms", "lower", _row("documind", "rt_p50_ms")),
        ("round trip p99, ms", "lower", _row("documind", "rt_p99_ms")),
        ("CPU µs/job end to end, valkey + stages", "lower", _cpu_sum("documind", "cpu_us_per_job")),
        ("RQ jobs/s (control: same code)", "higher", _row("rq", "jobs_per_s")),
        ("RQ round trip p50, ms (control)", "lower", _row("rq", "rt_p50_ms")),
    ],
    "ingest": [
        ("DocuMind ingest, docs/s", "higher", lambda d: d.get("ingest", {}).get("stack_docs_per_s")),
        ("ingest / raw model (same run)", "higher", lambda d: d.get("ingest", {}).get("ratio")),
        ("embedder CPU s", "lower", lambda d: d.get("ingest", {}).get("cpu_s", {}).get("embedder")),
    ],
    "latency": [
        ("chat sequential p50, ms", "lower", _row("chat, sequential", "p50_ms")),
        ("chat sequential p99, ms", "lower", _row("chat, sequential", "p99_ms")),
        ("search sequential p50, ms", "lower", _row("search, sequential", "p50_ms")),
        ("chat concurrent p50, ms", "lower", _row(_concurrent("chat"), "p50_ms")),
        ("chat concurrent, req/s", "higher", _row(_concurrent("chat"), "req_per_s")),
        ("search concurrent, req/s", "higher", _row(_concurrent("search"), "req_per_s")),
        ("CPU ms/chat concurrent, services", "lower", _cpu_sum(_concurrent("chat"), "cpu_ms_per_request")),
    ],
}  # fmt: skip


def order(rounds: int) -> list[tuple[int, str]]:
    """(round, side) in run order: head first in even rounds, base first in odd ones."""
    return [(i, side) for i in range(rounds) for side in (SIDES if i % 2 == 0 else SIDES[::-1])]


def verdict(ratio: float, better: str) -> str:
    change = round(ratio - 1 if better == "higher" else 1 - ratio, 6)  # > 0: head is better
    if abs(change) <= TOLERANCE:
        return "within 5 %"
    return f"head {'better' if change > 0 else 'WORSE'} by {abs(change):.0%}"


def summarise(bench: str, head: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Per figure: name, which way is better, medians, head / base, verdict, each run's value."""
    rows = []
    for name, better, get in FIGURES[bench]:
        values = [[v for v in map(get, runs) if v is not None] for runs in (head, base)]
        if not all(values):
            continue
        h, b = (statistics.median(v) for v in values)
        ratio = h / b if b else float("nan")
        runs = [" / ".join(f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" for x in v) for v in values]
        rows.append([name, better, h, b, f"{ratio:.3f}", verdict(ratio, better), *runs])
    return rows


HEADER = ["figure", "better", "head median", "base median", "head / base", "verdict"]
HEADER += ["head runs", "base runs"]


def cpu_info() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    found = sorted({f for f in (flags[1].split() if flags else []) if re.search("avx2|avx512|vnni", f)})
    shown = " ".join(found) or "none of avx2/avx512/vnni"
    return f"{model[1] if model else '?'}, {os.cpu_count()} cores, flags: {shown}"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def worktree(rev: str) -> Iterator[tuple[Path, str]]:
    """``rev`` checked out next to this checkout; removed on the way out."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = ROOT.parent / f"documind-ab-{sha[:10]}"
    git("worktree", "add", "--detach", str(path), sha)
    try:
        yield path, sha
    finally:
        git("worktree", "remove", "--force", str(path))


def check_imports(checkout: Path, env: dict[str, str]) -> None:
    """A process started like the bench in ``checkout`` must import that checkout's code."""
    code = "import bench, libs.common.worker as w, services.gateway as g; print(bench, w, g)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=checkout, env=env, check=True, capture_output=True, text=True
    ).stdout
    files = re.findall(r"from '([^']+)'", out)
    wrong = [f for f in files if not Path(f).is_relative_to(checkout.resolve())]
    if len(files) != 3 or wrong:
        raise SystemExit(f"a process in {checkout} imports {wrong or out}: not that checkout's code")
    print(f"{checkout}: imports its own code ({files[1]})", flush=True)


def run_all(
    args: argparse.Namespace, checkouts: dict[str, Path], env: dict[str, str]
) -> dict[str, list[Any]]:
    """Every run, alternated; each side's figures in run order."""
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for i, side in order(args.rounds):
        result, log = args.out / f"{side}-{i + 1}.json", args.out / f"{side}-{i + 1}.log"
        cmd = [sys.executable, "-m", f"bench.{args.bench}", "--json", str(result), *args.bench_args]
        started = time.monotonic()
        with log.open("w") as fh:
            code = subprocess.call(cmd, cwd=checkouts[side], env=env, stdout=fh, stderr=subprocess.STDOUT)
        if code:
            raise SystemExit(f"{side} run {i + 1} exited with {code}; see {log}")
        results[side].append(json.loads(result.read_text()))
        took, load = time.monotonic() - started, loadavg()
        print(f"round {i + 1}, {side}: {took:.0f} s, 1-minute load {load} at end", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--base", required=True, help="the revision to compare against")
    p.add_argument("--head", help="measure this revision (a worktree) instead of the working tree")
    p.add_argument("--bench", required=True, choices=sorted(FIGURES))
    p.add_argument("--rounds", type=int, default=3, help="runs per side (default 3)")
    p.add_argument("--out", type=Path, help="directory for each run's log and JSON")
    p.add_argument("--json", metavar="FILE", help="also write the runs and the table as JSON")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then the bench's own arguments")
    args = p.parse_args(argv)
    args.bench_args = bench_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    args.out = out = args.out or Path(tempfile.mkdtemp(prefix=f"documind-ab-{args.bench}-"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DOCUMIND_ONNX_MODEL_PATH", str(MODEL))
    load0 = loadavg()
    print(f"CPU: {cpu_info()}; 1-minute load {load0}; output in {out}")
    with ExitStack() as stack:
        base, base_sha = stack.enter_context(worktree(args.base))
        if args.head:
            head, head_sha = stack.enter_context(worktree(args.head))
        else:
            dirty = git("status", "--porcelain", "--untracked-files=no", "--", "libs", "services", "bench")
            head, head_sha = ROOT, git("rev-parse", "HEAD") + (" + uncommitted edits" if dirty else "")
        print(f"head: {head_sha} in {head}\nbase: {base_sha} in {base}", flush=True)
        checkouts = {"head": head, "base": base}
        for checkout in checkouts.values():
            check_imports(checkout, env)
        results = run_all(args, checkouts, env)
    rows = summarise(args.bench, results["head"], results["base"])
    ends = ("loadavg_1m_start", "loadavg_1m_end")
    loads = [r["config"][k] for runs in results.values() for r in runs for k in ends if r["config"].get(k)]
    load1 = loadavg()
    print("\n" + markdown_table(HEADER, rows))
    print(f"\n`python -m bench.{args.bench} {' '.join(bench_args)}`, {args.rounds} runs a side, alternated")
    print(f"CPU: {cpu_info()}")
    span = f"{min(loads)} to {max(loads)}" if loads else "?"
    print(f"1-minute load: {load0} before, {load1} after; at the runs' starts and ends {span}")
    if args.json:
        meta = {"bench": args.bench, "head": head_sha, "base": base_sha, "args": bench_args}
        meta |= {"cpu": cpu_info(), "loadavg_before_after": [load0, load1]}
        write_json(args.json, {**meta, "table": rows, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
