"""Demonstrations for the detection prompt: worked examples (dialogue context -> sub-task in
schema form) chosen from the active dataset's training dialogues, labelled by
:func:`agent.heuristics.label_turn`, balanced over sub-tasks and seeded."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from functools import lru_cache

from agent.heuristics import label_turn
from crsdata.loaders import load_dialogues
from tools.detail import attribute_from_text
from tools.dialogue import format_dialogue
from tools.env import expert_env
from tools.subtasks import SUBTASKS


@lru_cache(maxsize=16)
def demonstrations(dataset: str, k: int, seed: int = 0, root: str | None = None, context_turns: int = 2) -> tuple[str, ...]:
    """``k`` demonstrations as prompt text, round-robin over the sub-tasks found in training data."""
    if k <= 0:
        return ()
    env = expert_env(dataset, root)
    by_task: dict[str, list[str]] = defaultdict(list)
    dialogues = load_dialogues(dataset, "train", env.root)
    rng = random.Random(seed)
    for dlg in rng.sample(dialogues, min(len(dialogues), 300)):
        for i, turn in enumerate(dlg.turns):
            if turn.role != "recommender" or i == 0 or dlg.turns[i - 1].role != "user":
                continue
            context = [(t.role, t.text) for t in dlg.turns[max(0, i - context_turns) : i]]
            name = label_turn(context, turn.text, turn.items, env)
            args = {a: ("<the dialogue above>" if a == "dialogue context" else env.category) for a in SUBTASKS[name].args}
            if "item name" in args:
                named = env.linker.link(context[-1][1]).items or list(turn.items) or env.linker.link(turn.text).items
                if not named:
                    continue
                args["item name"] = named[-1]
            if "item attribute" in args:
                args["item attribute"] = attribute_from_text(context[-1][1]) or "plot"
            demo = f"Dialogue context:\n{format_dialogue(context)}\nSub-task: {json.dumps({'name': name, 'args': args})}"
            by_task[name].append(demo)
    order = [t for t in SUBTASKS if by_task.get(t)]
    out: list[str] = []
    while len(out) < k and any(by_task[t] for t in order):
        for t in order:
            if by_task[t] and len(out) < k:
                out.append(by_task[t].pop(rng.randrange(len(by_task[t]))))
    return tuple(out)
