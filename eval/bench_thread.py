"""``python -m eval.bench_thread --turns 1000 [--threads 50]``: long conversations through
``build_crs_graph`` with the SQLite checkpointer (one thread, or a soak spread round-robin over many),
reporting at checkpoints (50, 200, 1000 turns) the database size, the bytes the last turns added per
turn, the resident memory, the median and p95 turn latency and the turns that raised. Figures for the
report, never asserted in tests (``tests/test_boundary.py`` checks that the state itself stays bounded).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

MESSAGES = [
    "I like The Shining (1980) and It (2017)",
    "why that one?",
    "Who directed it?",
    "something else, maybe a comedy?",
    "hello again",
]


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class BenchThreadArguments:
    """``python -m eval.bench_thread``."""

    turns: int = 1000
    report: str = field(default="50,200,1000", metadata={"help": "turn counts to report at"})
    max_new_tokens: int = 16
    out: str | None = field(default=None, metadata={"help": "write the rows as JSON here"})
    threads: int = field(default=1, metadata={"help": "spread the turns round-robin over this many threads (a soak)"})
    durability: Literal["sync", "async", "exit"] = field(default="async", metadata={"help": "LangGraph durability of each turn"})


def main(argv: list[str] | None = None) -> None:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BenchThreadArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableConfig

    from agent.context import Context
    from agent.graph import build_crs_graph
    from agent.memory import open_checkpointer
    from eval.report import percentile

    marks = {int(x) for x in args.report.split(",")}
    db = Path(tempfile.mkdtemp()) / "bench.sqlite"
    rows, times, last_size, last_turn, errors = [], [], 0, 0, 0
    with open_checkpointer(db) as saver, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = build_crs_graph(checkpointer=saver)
        ctx = Context(max_new_tokens=args.max_new_tokens)
        for turn in range(1, args.turns + 1):
            config: RunnableConfig = {"configurable": {"thread_id": f"t{turn % args.threads}"}}
            text = MESSAGES[(turn // args.threads) % len(MESSAGES)]
            start = time.perf_counter()
            try:
                graph.invoke({"messages": [HumanMessage(f"{text} ({turn})")]}, config, context=ctx, durability=args.durability)
            except Exception as exc:  # noqa: BLE001 - counted and shown: a soak reports failures instead of stopping at the first
                errors += 1
                print(f"turn {turn}: {type(exc).__name__}: {exc}", flush=True)
            times.append(time.perf_counter() - start)
            if turn in marks:
                saver.conn.commit()
                size = os.path.getsize(db)
                row = {"turns": turn, "db_mb": round(size / 2**20, 2), "kb_per_turn_since_last": round((size - last_size) / 1024 / (turn - last_turn), 1),
                       "rss_mb": round(rss_mb(), 1), "median_turn_s": round(statistics.median(times[last_turn:]), 3),
                       "p95_turn_s": round(percentile(times[last_turn:], 0.95), 3), "errors": errors,
                       "threads": args.threads, "state_messages": len(graph.get_state(config).values["messages"]), "durability": args.durability}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
                last_size, last_turn = size, turn
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
