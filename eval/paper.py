"""``python -m eval paper --dataset opendialkg``: the paper's tables on a full test split, in two passes.

1. *Recommendation* (Tables 4, 6-8 and the ablation figures): every system on the whole split with
   ``metrics="rec"`` (the response is not generated, so a manager system costs its decisions and its
   expert, ~0.1 s a turn here), into ``<results>/<dataset>/<split>_rec/``.
2. *Conversation* (Table 5): the systems that write text, with the LLM generating, on a fixed seeded
   subset (``--conv-sample``, default 1,000 turns; 0 skips it) into ``<results>/<dataset>/<split>/``.

Both passes are resumable (finished turns are skipped) and write Markdown, CSV and PNG beside the
per-turn results. The budget is printed before anything runs.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from transformers import HfArgumentParser

from agent.config import GraphConfig
from crsdata.paths import run_cli
from crsdata.publish import PUBLISH_HELP, command_line, publish
from eval.harness import RunConfig, results_folder, run
from eval.report import write_report

SECONDS_PER_TURN = {"rec_manager": 0.12, "rec_other": 0.02, "conv": 1.6}  # measured here (2 cores); for the printed budget


@dataclass
class PaperArguments(GraphConfig):
    """The paper's tables on one dataset (the graph's options are :class:`GraphConfig`'s)."""

    split: str = field(default="test")
    results_dir: str = field(default="results")
    with_ablations: bool = field(
        default=False, metadata={"aliases": ["--ablations"], "help": "also w/o SI, w/o DI, w/o SG (the prompted manager: ~1 s a turn)"}
    )
    conv_sample: int = field(default=1000, metadata={"help": "seeded turns for the conversation pass; 0 skips it"})
    conv_systems: str = field(default="full,llm_only", metadata={"help": "systems of the conversation pass"})
    limit: int | None = field(default=None, metadata={"help": "first N turns only (a smoke run; the tables are for the full split)"})
    publish: bool | None = field(default=None, metadata={"help": PUBLISH_HELP})


def recommendation_systems(dataset: str, data_root: str | None, ablations: bool) -> list[str]:
    """full, w/o M, every recommendation expert of the dataset alone (offered or not), and the ablations if asked."""
    from tools import default_experts
    from tools.base import subtask_of
    from tools.subtasks import RECOMMENDATION

    experts = [f"expert:{t.name}" for t in default_experts(dataset, data_root, validated_only=False) if subtask_of(t) == RECOMMENDATION]
    return ["full", "wo_m", *(["wo_si", "wo_di", "wo_sg"] if ablations else []), *experts]


def main(argv: list[str] | None = None) -> int:
    from crsdata.loaders import load_samples

    (args,) = HfArgumentParser(PaperArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    systems = recommendation_systems(args.dataset, args.data_root, args.with_ablations)
    n = len(load_samples(args.dataset, args.split, args.data_root, limit=args.limit))
    managers = sum(s in ("full", "wo_si", "wo_di", "wo_sg") for s in systems)
    conv = [s for s in args.conv_systems.split(",") if s] if args.conv_sample else []
    budget = (n * managers * SECONDS_PER_TURN["rec_manager"] * (8 if args.with_ablations else 1)
              + n * (len(systems) - managers) * SECONDS_PER_TURN["rec_other"] + min(n, args.conv_sample) * len(conv) * SECONDS_PER_TURN["conv"])  # fmt: skip
    print(f"{args.dataset}/{args.split}: {n} turns; recommendation pass: {', '.join(systems)}; "
          f"conversation pass: {', '.join(conv) or 'skipped'} on {min(n, args.conv_sample)} seeded turns; budget about {budget / 60:.0f} min", flush=True)  # fmt: skip
    base = RunConfig.of(args, split=args.split, results_dir=Path(args.results_dir), limit=args.limit)
    start = time.perf_counter()
    rec = replace(base, systems=systems, metrics="rec")
    run(rec)
    tables = [write_report(results_folder(rec), args.data_root)]
    print(tables[-1], flush=True)
    if conv:
        talk = replace(base, systems=conv, metrics="all", sample=args.conv_sample if args.conv_sample < n else None)
        run(talk)
        tables.append(write_report(results_folder(talk), args.data_root))
        print(tables[-1], flush=True)
    print(f"wall time: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if args.publish if args.publish is not None else args.limit is None:
        key = args.dataset + (" with ablations" if args.with_ablations else "") + (f" ({args.model})" if args.model else "")
        text = "\n\n".join(t.read_text(encoding="utf-8") for t in tables)
        publish("paper", key, text, command_line("eval paper", argv))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
