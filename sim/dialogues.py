"""One simulated dialogue (:func:`simulate`) and the test turns it starts from (:func:`choose_dialogues`).

The dialogue stops at the first turn whose shown top-k holds a target (success at that turn). A
conversational system (the graph) talks on one thread: it gets the history once, then each user
reply, and keeps its state between turns; a stateless system reads the dialogue so far on every
turn. Turns whose history already names a target are dropped (the leakage that inflates iEvaLM's
figures) and counted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from crsdata.catalog import Item
from crsdata.loaders import load_samples
from crsdata.schema import RecSample, Turn
from sim.systems import Conversational, System
from sim.users import UserSimulator, mentions
from tools.subtasks import RECOMMENDATION


@dataclass
class Episode:
    """One simulated dialogue with one system."""

    sample_id: str
    targets: list[str]
    success_turn: int | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    repeated_questions: int = 0
    questions: int = 0
    re_recommended: int = 0
    recommendations: int = 0
    masked_replies: int = 0


def simulate(system: System, sample: RecSample, user: UserSimulator, turns: int, k: int) -> Episode:
    """Let ``user`` talk with ``system`` from ``sample``'s history for up to ``turns`` system turns."""
    ep = Episode(sample.sample_id, list(sample.targets))
    context = list(sample.context)
    asked: set[str] = set()
    offered = {i for t in context for i in t.items}  # named in the history: not a new recommendation
    session = system.session(sample) if isinstance(system, Conversational) else None
    for turn in range(1, turns + 1):
        if session is not None:  # one thread: the system keeps its state from turn to turn
            pred = session(ep.turns[-1]["user"] if ep.turns else None)
        else:  # stateless: the system reads the dialogue so far
            pred = system.predict(replace(sample, context=tuple(context)))
        shown = pred.ranked[:k] if pred.subtask == RECOMMENDATION else []
        if shown:
            ep.recommendations += 1
            ep.re_recommended += shown[0] in offered
            offered.add(shown[0])
        else:
            ep.questions += 1
            ep.repeated_questions += pred.response in asked
            asked.add(pred.response)
        hit = any(t in shown for t in sample.targets)
        record: dict[str, Any] = {
            "turn": turn,
            "subtask": pred.subtask,
            "expert": pred.expert,
            "response": pred.response,
            "shown": shown[:3],
        }
        if hit:
            ep.success_turn = turn
            ep.turns.append(record)
            break
        record["user"] = user.reply(pred)
        ep.turns.append(record)
        if user.left:
            break
        context += [Turn("recommender", pred.response, tuple(shown[:1])), Turn("user", record["user"])]
    ep.masked_replies = user.masked
    return ep


def leaks(sample: RecSample, titles: list[str]) -> bool:
    """Does the history already name a target (the iEvaLM leakage)?"""
    text = " ".join(t.text for t in sample.context)
    return any(mentions(text, t) for t in titles) or any(i in sample.targets for t in sample.context for i in t.items)


def choose_dialogues(
    env: Any, dataset: str, split: str, n: int, seed: int, data_root: str | None = None
) -> tuple[list[tuple[RecSample, Item]], int]:
    """A seeded sample of ``n`` turns (all when ``n`` is 0) with a catalog target whose history does not
    name a target, each with its (first) target item; and how many were dropped for that leakage."""
    samples = [s for s in load_samples(dataset, split, data_root) if s.targets]
    random.Random(seed).shuffle(samples)
    chosen: list[tuple[RecSample, Item]] = []
    dropped = 0
    for s in samples:
        items = [env.catalog.get(dataset, t) for t in s.targets]
        if items[0] is None:
            continue
        if leaks(s, [i.title for i in items if i is not None]):
            dropped += 1
            continue
        chosen.append((s, items[0]))
        if n and len(chosen) == n:
            break
    return chosen, dropped
