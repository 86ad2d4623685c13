"""``python -m eval simulate``: interactive evaluation with a simulated user (iEvaLM-CRS's protocol).

For each test turn with target items, the real dialogue up to that turn is the history; the system
answers it, and while no target is among the top-k items it shows, a simulated user who knows the
target's attributes from the catalog (never its title) answers for up to ``turns`` turns:

* a question about an attribute (genre, cast, director, writer, decade: found in the question's
  words, e.g. "Any actors you enjoy?") gets the target's values of that attribute, as iEvaLM's
  attribute mode answers; any other question gets the next attribute not said yet (genre, cast,
  director, writer, in that order); a turn that neither recommends nor asks (an explanation nobody
  asked for) gets no fact, only "What would you recommend?";
* a wrong recommendation is rejected: the user saw the top-k (success@k counts them all), so the
  rejection names every one of them ("Not X, Y, Z, ..."), together with the next attribute not said yet
  (``--feedback reason``, the default), or with no reason at all (``--feedback plain``: iEvaLM's
  "I don't like them."), so that only a system that asks learns more than the opening.

The dialogue stops at the first turn whose shown top-k holds a target (success at that turn). The
graph systems talk on one thread per dialogue (:class:`sim.systems.Conversational`): they get the
history once, then each user reply, and keep their state between turns as they do in the chat and
the server; a stateless system (an expert alone) reads the dialogue so far on every turn.
Dialogues whose history already names a target are dropped (the leakage that inflates iEvaLM's
figures) and counted in the report.

Metrics per system, over the same dialogues: success@k within the turns (95% bootstrap CI, one-sided
paired t and Wilcoxon tests against the first system, Holm-corrected), mean turns to success, the
share of the system's questions that repeat an earlier question of the same dialogue verbatim, and
the share of recommendations whose named item (the top one) was already offered or rejected.
Transcripts go to ``<results>/simulate/<dataset>/<system>.jsonl``, tables to ``tables.md``.

A *curious* attribute user (``curious`` > 0; RLPF's training users, never the evaluation's) sometimes
asks about a wrong recommendation before rejecting it ("Why would I like that?", "Who made it?") and
leaves, the dialogue failed, when the next turn does not answer (an explanation, a detail): a user
whose question is ignored does not stay, so a policy learned from these users keeps answering them.

Two simulators share the :class:`UserSimulator` interface: the deterministic attribute one (the
default) and :class:`LLMSimulator` (``--simulator llm --simulator_model SPEC``: any chat model plays
the user from ``prompts/simulator.txt``; its sentences that name the target, even fuzzily, are
removed and counted).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import GraphConfig
from crsdata.catalog import Item
from crsdata.metrics import bootstrap_ci, compare_paired, holm
from crsdata.publish import PUBLISH_HELP, command_line, publish
from sim.dialogues import Episode, choose_dialogues, simulate
from sim.users import AttributeSimulator, LLMSimulator, UserSimulator, similar_titles


@dataclass
class SimulateArguments(GraphConfig):
    """``python -m eval simulate``: a simulated user talks with each system (the graph's options are
    :class:`GraphConfig`'s)."""

    split: str = field(default="test")
    dialogues: int = field(default=200, metadata={"help": "test turns with targets (seeded sample) to start from; 0: every one"})
    turns: int = field(default=5, metadata={"help": "system turns per simulated dialogue"})
    k: int = field(default=10, metadata={"help": "success when a target is in the top-k the system shows"})
    systems: str = field(default="full,wo_m", metadata={"help": "comma list, as python -m eval run; the first is compared with the rest"})
    results_dir: str = field(default="results")
    simulator: str = field(default="attribute", metadata={"help": "attribute (deterministic) or llm (a chat model plays the user)"})
    simulator_model: str | None = field(default=None, metadata={"help": "model spec of the llm simulator (default: the embedded model)"})
    feedback: str = field(default="reason", metadata={"help": "a rejection gives a reason (reason) or not (plain, as iEvaLM)"})
    facts: str = field(
        default="genre,cast,director,writer,decade",
        metadata={
            "help": "what the attribute user states, in order; genre,decade,title: no names, only genres, decades and films like the target"
        },
    )
    publish: bool = field(default=True, metadata={"help": PUBLISH_HELP})


def _ci(values: list[float]) -> str:
    lo, hi = bootstrap_ci(values)
    return f"{sum(values) / max(1, len(values)):.4f} [{lo:.4f}, {hi:.4f}]"


def run(args: SimulateArguments, progress: bool = True) -> Path:
    """Simulate every system on the same dialogues; write transcripts and ``tables.md``; return the tables."""
    from tqdm import tqdm

    from agent.llm import load_chat_model
    from eval.harness import RunConfig, make_system
    from tools.env import expert_env

    if args.simulator not in ("attribute", "llm"):
        raise ValueError(f"unknown simulator {args.simulator!r}; use 'attribute' or 'llm'")
    env = expert_env(args.dataset, args.data_root)
    talker = load_chat_model(args.simulator_model) if args.simulator == "llm" else None

    facts = tuple(f.strip() for f in args.facts.split(",") if f.strip())

    def user_for(item: Item) -> UserSimulator:
        if talker is not None:
            return LLMSimulator(item, talker, env.category)
        similar = similar_titles(env, item) if "title" in facts else None
        return AttributeSimulator(item, args.feedback, args.k, facts=facts, similar=similar)

    chosen, dropped = choose_dialogues(env, args.dataset, args.split, args.dialogues, args.seed, args.data_root)
    cfg = RunConfig.of(args, split=args.split, metrics="rec")
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    out = (
        Path(args.results_dir) / "simulate" / args.dataset / ("llm" if talker is not None else "plain" if args.feedback == "plain" else "")
    )
    if talker is None and args.facts != SimulateArguments.facts:
        out = out / args.facts.replace(",", "-")
    out.mkdir(parents=True, exist_ok=True)
    shared: dict[str, Any] = {}
    episodes: dict[str, list[Episode]] = {}
    seconds: dict[str, float] = {}
    for name in names:
        system = make_system(name, cfg, shared)
        start = time.perf_counter()
        eps = [simulate(system, s, user_for(item), args.turns, args.k) for s, item in tqdm(chosen, desc=name, disable=not progress)]
        seconds[name] = time.perf_counter() - start
        episodes[name] = eps
        with (out / f"{name.replace(':', '__')}.jsonl").open("w", encoding="utf-8") as fh:
            for ep in eps:
                fh.write(json.dumps(ep.__dict__) + "\n")
    return write_tables(out, args, episodes, seconds, len(chosen), dropped)


def _simulator_line(args: SimulateArguments) -> str:
    if args.simulator == "llm":
        return f"LLM simulator ({args.simulator_model or 'the embedded model'}, prompts/simulator.txt, seed {args.seed})"
    return (f"Attribute simulator (seed {args.seed}, rejections {'with a reason' if args.feedback == 'reason' else 'without a reason'}, "
            f"stating {args.facts.replace(',', ', ')})")  # fmt: skip


def write_tables(
    out: Path, args: SimulateArguments, episodes: dict[str, list[Episode]], seconds: dict[str, float], n: int, dropped: int
) -> Path:
    """The report: success, turns, repeats and re-recommendations per system, and paired tests."""
    names = list(episodes)
    success = {name: [float(e.success_turn is not None) for e in eps] for name, eps in episodes.items()}
    lines = [f"# Simulated users on {args.dataset}/{args.split}: {n} dialogues, up to {args.turns} turns, success@{args.k}", "",
             f"{_simulator_line(args)}; {dropped} dialogues were skipped because their history already named a target; "
             f"replies from which the target's title was removed: {sum(e.masked_replies for eps in episodes.values() for e in eps)}.", "",
             f"| system | success@{args.k} [95% CI] | mean turns to success | repeated questions | re-recommended items | recommends on | minutes |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, eps in episodes.items():
        won = [e.success_turn for e in eps if e.success_turn is not None]
        q, rq = sum(e.questions for e in eps), sum(e.repeated_questions for e in eps)
        r, rr = sum(e.recommendations for e in eps), sum(e.re_recommended for e in eps)
        lines.append(
            f"| {name} | {_ci(success[name])} | {sum(won) / len(won) if won else float('nan'):.2f} | {rq} of {q} | {rr} of {r} | "
            f"{r / max(1, q + r):.2f} of turns | {seconds.get(name, 0) / 60:.1f} |"
        )
    if len(names) > 1:
        main = names[0]
        comps = [(b, compare_paired(success[main], success[b])) for b in names[1:]]
        lines += ["", f"{main} against each system (one-sided, a > b; Holm over {len(comps)}):", "",
                  "| system | mean diff [95% CI] | t-test p | Holm p | Wilcoxon p |", "|---|---|---|---|---|"]  # fmt: skip
        for (b, c), p in zip(comps, holm([c.ttest_p for _, c in comps]), strict=True):
            lines.append(f"| {b} | {c.table_cells(p)} |")
    first = episodes[names[0]][0] if names and episodes[names[0]] else None
    if first is not None:
        lines += ["", f"One transcript ({names[0]}, {first.sample_id}, targets {first.targets}):", ""]
        for t in first.turns:
            lines.append(f"- system ({t['subtask']}): {t['response']}" + (f"\n- user: {t['user']}" if "user" in t else ""))
    md = out / "tables.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(SimulateArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    md = run(args)
    print(md.read_text(encoding="utf-8"))
    if args.publish:
        key = f"{args.dataset}: {args.simulator} user, {args.feedback} feedback, states {args.facts}" + (
            f" ({args.model})" if args.model else ""
        )
        publish("simulate", key, md.read_text(encoding="utf-8"), command_line("eval simulate", argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
