"""``python -m eval.bench_server --threads 8 --turns 5 --jobs 1,2,4``: concurrent conversations through the
LangGraph server API (``python -m agent serve`` on a free loopback port, driven by ``langgraph_sdk``'s async
client), once per setting of the server's concurrent runs per worker. Each thread says its own marked
words; afterwards every thread's state must hold only its own (isolation). Reports p50/p95 turn latency,
wall time and failures, and each as a ratio to the first setting's. Figures for the report, not a test.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.boundary import MESSAGES_WINDOW
from agent.server import running_server
from eval.report import percentile

MESSAGES = ["I like {m} horror movies", "why that one?", "Who directed it?", "something else, maybe a comedy?", "thanks, one more please"]


async def _conversation(client: object, marker: str, turns: int, latencies: list[float], failures: list[str]) -> str:
    thread = (await client.threads.create())["thread_id"]  # type: ignore[attr-defined]
    for i in range(turns):
        text = MESSAGES[i % len(MESSAGES)].format(m=marker) + f" [{marker}]"
        start = time.perf_counter()
        try:
            out = await client.runs.wait(thread, "llmcrs", input={"messages": [{"role": "user", "content": text}]})  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - counted: a load test reports failures instead of stopping at the first
            out = {"error": f"{type(exc).__name__}: {exc}"}
        latencies.append(time.perf_counter() - start)
        if not isinstance(out, dict) or not out.get("response") or out.get("error"):
            failures.append(f"{marker} turn {i}: {str(out)[:200]}")
    return thread


async def _run(url: str, threads: int, turns: int) -> dict[str, object]:
    from langgraph_sdk import get_client

    client = get_client(url=url)
    latencies: list[float] = []
    failures: list[str] = []
    markers = [f"u{i:02d}" for i in range(threads)]
    start = time.perf_counter()
    ids = await asyncio.gather(*(_conversation(client, m, turns, latencies, failures) for m in markers))
    wall = time.perf_counter() - start
    leaks = 0
    for marker, thread in zip(markers, ids, strict=True):
        values: dict = (await client.threads.get_state(thread))["values"]  # type: ignore[assignment]
        said = [str(m["content"]) for m in values["messages"] if m["type"] == "human"]
        leaks += sum(1 for text in said if f"[{marker}]" not in text)
        leaks += len(said) != min(turns, MESSAGES_WINDOW // 2)  # the state keeps a window of the thread
    ordered = sorted(latencies)
    return {"threads": threads, "turns_per_thread": turns, "turns": len(latencies), "wall_s": round(wall, 1),
            "p50_s": round(statistics.median(ordered), 2), "p95_s": round(percentile(ordered, 0.95), 2),
            "failures": len(failures), "isolation_violations": leaks, "failure_examples": failures[:3]}  # fmt: skip


@dataclass
class BenchServerArguments:
    """``python -m eval.bench_server``."""

    threads: int = field(default=8, metadata={"help": "concurrent conversations"})
    turns: int = field(default=5, metadata={"help": "turns per thread"})
    jobs: str = field(
        default="2", metadata={"help": "the server's concurrent runs per worker; a comma list runs each (ratios to the first)"}
    )
    out: str | None = field(default=None, metadata={"help": "write the figures as JSON here"})


def main(argv: list[str] | None = None) -> None:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BenchServerArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_server.log"
    rows: list[dict[str, object]] = []
    for jobs in [int(j) for j in args.jobs.split(",") if j.strip()]:
        with running_server(log, "--jobs", str(jobs)) as served:
            row = {**asyncio.run(_run(served.url, args.threads, args.turns)), "jobs_per_worker": jobs}
        if rows:  # as ratios to the first setting (usually 1 job: one run at a time)
            row.update({f"{k}_ratio": round(float(row[k]) / max(float(rows[0][k]), 1e-9), 2) for k in ("p50_s", "p95_s", "wall_s")})  # type: ignore[arg-type]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
