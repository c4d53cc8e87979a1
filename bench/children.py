"""The pipeline benches' child processes: started with their output in a log directory, signalled,
stopped (every one on the way out), and the CPU time each has spent."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc); 0.0 where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Children:
    """Child processes with their output in ``logdir``; :meth:`stop_all` stops them all."""

    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        self.logdir = logdir
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Processes not started here whose CPU time is reported too (valkey-server).
        self.watched: dict[str, int] = {}

    def start(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        with (self.logdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs[name] = proc
        return proc

    def signal(self, names: Sequence[str], sig: signal.Signals) -> None:
        for name in names:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logdir}/{name}.log")

    def stop(self, names: Sequence[str], timeout_s: float = 15.0) -> None:
        names = [n for n in names if n in self.procs]
        # A stopped process would keep SIGTERM pending: continue it first.
        self.signal(names, signal.SIGCONT)
        self.signal(names, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name in names:
            proc = self.procs.pop(name)
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        self.stop(list(self.procs))

    def cpu(self, names: Sequence[str]) -> dict[str, float]:
        """CPU seconds so far of the named children / watched processes, and of this one ("bench")."""
        pids = {**self.watched, **{n: p.pid for n, p in self.procs.items()}}
        out = {n: cpu_seconds(pids[n]) for n in names if n in pids}
        out["bench"] = time.process_time()
        return out


def cpu_us_per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    return {k: round((after[k] - before[k]) / jobs * 1e6, 1) for k in after if k in before}
