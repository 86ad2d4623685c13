"""``python -m rl.responses --dataset redial``: the response stage's training data, from a corpus.

For every recommender turn of a split, the input is prompt #3 as the graph would write it for that turn:
the last utterances (``Context.max_context_turns``) and the summary, built with teacher forcing.

* The sub-task is the turn's label (:func:`agent.heuristics.label_turn`).
* A recommendation names the reference's own new items, with the catalog's facts of the first
  (``About:``) and the grounded reason the KG gives for it (``Reason:``).
* A detail search or an explanation carries what the catalog or the KG gives: the default expert's output
  on the arguments the graph resolves.
* An elicitation carries the elicitor's question.

The target is the reference response. ``reply_prompt`` is the same turn in the compact prompt the reply adapter
reads (:func:`agent.respond.reply_prompt`). The expert output in the prompt carries the summary's reason and
facts lines, so that a model fine-tuned on it can state them. Rows are cached under
``$LLMCRS_HOME/responses/<dataset>/<split>.jsonl`` (``--force true`` rebuilds), with ``facts``: what a
reply may claim of the turn's item (the grounding reward reads them). The command prints how many turns are
usable, by sub-task: a turn is not when its reference is empty, or when the summary would have nothing to
say (a recommendation whose items the catalog does not know, an item question with no item found).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from crsdata.paths import home_dir, run_cli


@dataclass
class ResponseDataArguments:
    """``python -m rl.responses``: build the response data of a dataset."""

    dataset: str = field(default="redial", metadata={"help": "dataset"})
    data_root: str | None = field(default=None, metadata={"help": "data directory"})
    splits: str = field(default="train,valid", metadata={"help": "comma-separated splits"})
    dialogues: int | None = field(default=None, metadata={"help": "the first N dialogues of each split only (default: all)"})
    force: bool = field(default=False, metadata={"help": "rebuild a split that is cached already"})


def responses_path(dataset: str, split: str) -> Path:
    """Where a split's response data is cached."""
    return home_dir() / "responses" / dataset / f"{split}.jsonl"


def turn_row(env: Any, tools: dict[str, Any], dialogue: list[tuple[str, str]], reference: str, targets: tuple[str, ...]) -> dict[str, Any]:
    """One turn's row: its sub-task, expert, summary, prompt and target, and whether it is usable (``skip``: why not)."""
    import prompts
    from agent.context import Context
    from agent.heuristics import label_turn, resolve_args
    from agent.respond import reply_prompt, summary_output, summary_text
    from tools.base import subtask_of
    from tools.dialogue import format_dialogue
    from tools.explanation import catalog_phrase, strongest_reason
    from tools.invoke import description_line, invoke_expert
    from tools.subtasks import RECOMMENDATION

    name = label_turn(dialogue, reference, targets, env)  # type: ignore[arg-type]
    tool = next((t for t in tools.values() if subtask_of(t) == name), None)
    whole = format_dialogue(dialogue)  # type: ignore[arg-type]
    skip, facts = "", []
    if name == RECOMMENDATION:
        mentioned = set(env.linker.link(whole).items)
        items = [t for t in targets if t in env.item_attributes and t not in mentioned]
        out: dict[str, Any] = {"items": items, "text": ", ".join(items[:3])}
        if items:
            reason, about = strongest_reason(env, items[0], whole), catalog_phrase(env, items[0])
            out.update({**({"reason": reason} if reason else {}), **({"about": about} if about else {})})
            facts = [*env.facts_of(items[0]), reason or ""]
        else:
            skip = "no catalog item among the targets"
    elif tool is None:
        out, skip = {"text": ""}, f"no expert for {name}"
    else:
        args = resolve_args(name, dialogue, [], env, whole)  # type: ignore[arg-type]
        out = invoke_expert(tool, args, 50, [])
        if "item name" in args and not args["item name"]:
            skip = "no item to answer about"
        facts = [*env.facts_of(args["item name"])] if args.get("item name") else []
    if not reference.strip():
        skip = "empty reference"
    expert = tool.name if tool is not None else "none"
    desc = f"{expert}: {description_line(tool).split('. ')[0]}" if tool is not None else expert
    summary = summary_text(name, expert, out)
    window = format_dialogue(dialogue[-Context().max_context_turns :])  # type: ignore[arg-type]
    output = summary_output(out)  # the expert output with its reason and facts lines
    prompt = prompts.render("response", {"Dialogue Context": window, "Sub-Task Name": name, "ID, Description": desc, "Output": output})
    reply = reply_prompt(dialogue, name, out)  # type: ignore[arg-type]
    return {"subtask": name, "expert": expert, "summary": summary, "prompt": prompt, "reply_prompt": reply, "target": reference.strip(),
            "items": list(out.get("items", []))[:10], "facts": [f for f in facts if f], "skip": skip}  # fmt: skip


def sft_target(row: dict[str, Any]) -> str | None:
    r"""The reply the adapter learns for a row, or ``None`` when the reference claims what the turn's prompt
    does not support (a title, a name or a year the summary and the window lack, "find it on Netflix"):
    a model trained on such replies learns to invent. A recommendation's reference that states no fact
    of its item is followed by what the catalog says of it, so that the adapter learns to say one.

    >>> row = {"subtask": "recommendation", "items": ["Heat (1995)"], "facts": ["crime", "Michael Mann", "1995"],
    ...        "reply_prompt": "Found: Heat (1995)\nAbout: a crime movie directed by Michael Mann",
    ...        "summary": "Output: Heat (1995)\nAbout: a crime movie directed by Michael Mann"}
    >>> sft_target({**row, "target": "Have you seen Heat (1995)?"})
    'Have you seen Heat (1995)? It is a crime movie directed by Michael Mann.'
    >>> sft_target({**row, "target": "Heat (1995) is a great crime movie!"})
    'Heat (1995) is a great crime movie!'
    >>> sft_target({**row, "target": "Heat (1995) won an Oscar."}) is None
    True
    """
    from agent.grounding import check
    from agent.respond import with_about

    top = row["items"][0] if row["subtask"] == "recommendation" and row["items"] else None
    found = check(row["target"], row["reply_prompt"], top, row["facts"])
    if not found.grounded or (top and not found.names_item):
        return None
    about = next((line[len("About: ") :] for line in row["summary"].splitlines() if line.startswith("About: ")), "")
    if top and not found.true_attribute and about:
        return with_about(row["target"], about)
    return str(row["target"])


def build(
    dataset: str, split: str, data_root: str | None = None, dialogues: int | None = None, progress: bool = True
) -> tuple[Path, Counter[str], Counter[str]]:
    """Write a split's rows; the file, and the turns and the usable turns per sub-task."""
    from crsdata.loaders import load_dialogues
    from rl.decisions import recommender_turns
    from tools import default_experts
    from tools.env import expert_env

    env = expert_env(dataset, data_root)
    tools = {t.name: t for t in default_experts(dataset, data_root, learned=False)}
    turns = list(recommender_turns(load_dialogues(dataset, split, env.root)[:dialogues]))
    path = responses_path(dataset, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: Counter[str] = Counter()
    usable: Counter[str] = Counter()
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for dlg, i, _ in tqdm(turns, desc=f"responses {dataset}/{split}", disable=not progress, unit="turn"):
            turn = dlg.turns[i]
            row = turn_row(env, tools, [(t.role, t.text) for t in dlg.turns[:i]], turn.text, tuple(turn.items))
            seen[row["subtask"]] += 1
            if not row["skip"]:
                usable[row["subtask"]] += 1
                fh.write(json.dumps({"id": f"{dlg.dialog_id}/{i}", **row}) + "\n")
    tmp.replace(path)
    return path, seen, usable


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(ResponseDataArguments, prog="python -m rl.responses").parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
        path = responses_path(args.dataset, split)
        if path.is_file() and not args.force and args.dialogues is None:
            print(f"{path}: cached ({sum(1 for _ in path.open())} rows; --force true rebuilds)")
            continue
        path, seen, usable = build(args.dataset, split, args.data_root, args.dialogues)
        print(f"{path}: {sum(usable.values())} usable of {sum(seen.values())} recommender turns")
        for name in sorted(seen):
            print(f"  {name}: {usable[name]} of {seen[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
