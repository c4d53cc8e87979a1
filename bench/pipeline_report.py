"""The pipeline bench's figures: a throughput run, the report's rows and the closing summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.common import Latency

THROUGHPUT_TARGET = 15.0  # DocuMind jobs/s at least 15x RQ's
LATENCY_TARGET = 1.0  # DocuMind round-trip p50 at most RQ's


@dataclass
class Throughput:
    jobs: int
    seconds: float
    # CPU microseconds per job that each process spent during the run (Linux only).
    cpu_us: dict[str, float] = field(default_factory=dict)
    # Mean messages per handler batch, by stage (from the workers' /metrics).
    batch: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.jobs / self.seconds


def median_run(runs: Sequence[Throughput]) -> Throughput:
    """The run with the median rate (the lower middle one for an even count)."""
    return sorted(runs, key=lambda t: t.per_s)[(len(runs) - 1) // 2]


@dataclass
class Report:
    config: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(
        self,
        name: str,
        tput: Throughput | None = None,
        lat: Latency | None = None,
        runs: Sequence[Throughput] = (),
    ) -> None:
        row = self.rows.setdefault(name, {})
        if tput is not None:
            row.update(jobs=tput.jobs, seconds=round(tput.seconds, 3), jobs_per_s=round(tput.per_s, 1))
            if tput.cpu_us:
                row["cpu_us_per_job"] = tput.cpu_us
            if tput.batch:
                row["mean_batch"] = tput.batch
            if len(runs) > 1:
                row["jobs_per_s_runs"] = [round(t.per_s, 1) for t in runs]
        if lat is not None:
            row.update(rounds=lat.rounds, rt_p50_ms=round(lat.p50_ms, 3), rt_p99_ms=round(lat.p99_ms, 3))
            row["rt_mean_ms"] = round(lat.mean_ms, 3)
        print(f"  {name}: {_describe(tput, lat, runs)}", flush=True)


def _describe(tput: Throughput | None, lat: Latency | None, runs: Sequence[Throughput]) -> str:
    parts = []
    if tput is not None:
        text = f"{tput.per_s:,.0f} jobs/s ({tput.jobs} in {tput.seconds:.2f}s)"
        if len(runs) > 1:
            text += " median of " + ", ".join(f"{t.per_s:,.0f}" for t in runs)
        parts.append(text)
        if tput.cpu_us:
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in tput.cpu_us.items())
            parts.append(f"CPU us/job: {cpu} (sum {sum(tput.cpu_us.values()):.0f})")
        if tput.batch:
            parts.append("mean batch: " + ", ".join(f"{k} {v:.1f}" for k, v in tput.batch.items()))
    if lat is not None:
        parts.append(f"round trip p50 {lat.p50_ms:.2f} ms, p99 {lat.p99_ms:.2f} ms ({lat.rounds} rounds)")
    return "; ".join(parts)


def summary(report: Report) -> str:
    rows = report.rows
    rq, dm = rows["rq"], rows["documind"]
    width = max(len(n) for n in rows) + 2
    lines = ["", f"{'':{width}}{'jobs/s':>10}{'rt p50 ms':>11}{'rt p99 ms':>11}"]
    for name, row in rows.items():
        tput = f"{row['jobs_per_s']:,.0f}" if "jobs_per_s" in row else "-"
        p50 = f"{row['rt_p50_ms']:.2f}" if "rt_p50_ms" in row else "-"
        p99 = f"{row['rt_p99_ms']:.2f}" if "rt_p99_ms" in row else "-"
        lines.append(f"{name:{width}}{tput:>10}{p50:>11}{p99:>11}")
    t_ratio = dm["jobs_per_s"] / rq["jobs_per_s"]
    l_ratio = dm["rt_p50_ms"] / rq["rt_p50_ms"]
    ratios: dict[str, float] = {"throughput": round(t_ratio, 2), "rt_p50": round(l_ratio, 3)}
    lines += [
        "",
        f"throughput   DocuMind / RQ         = {t_ratio:5.1f}x  (target >= {THROUGHPUT_TARGET:.0f}x): "
        + ("MET" if t_ratio >= THROUGHPUT_TARGET else "NOT MET"),
        f"round trip   DocuMind p50 / RQ p50 = {l_ratio:5.2f}   (target <= {LATENCY_TARGET:.0f}):  "
        + ("MET" if l_ratio <= LATENCY_TARGET else "NOT MET"),
    ]
    for name, key in (("documind drain", "drain"), ("documind http-ingress", "http_ingress")):
        if name in rows:
            ratios[f"throughput_{key}"] = round(rows[name]["jobs_per_s"] / rq["jobs_per_s"], 2)
            lines.append(f"  {name} / RQ = {ratios[f'throughput_{key}']:.1f}x")
    replicas = [n for n in rows if n.startswith("documind replicas=") and n != "documind replicas=1"]
    for name in replicas:
        ratio = rows[name]["jobs_per_s"] / rows["documind replicas=1"]["jobs_per_s"]
        ratios[f"throughput_{name.split()[-1]}_vs_1"] = round(ratio, 2)
        lines.append(f"  {name} / replicas=1 = {ratio:.2f}x (per-stage processes on the same cores)")
    report.config["ratios"] = ratios
    load = (report.config.get("loadavg_1m_start"), report.config.get("loadavg_1m_end"))
    lines.append(f"1-minute load average at start / end: {load[0]} / {load[1]} (other work skews figures)")
    return "\n".join(lines)
