"""What the graph does with the manager's sub-task before running it, whoever decided (:mod:`agent.deciders`):
a wish stated this turn is answered, not met with a question (:func:`wished_now`); an answer already given is
not repeated word for word unless the user asks for it again (:func:`not_a_repeat`); arguments a capable LLM
filled in are kept only when the catalog knows them (:func:`with_filled_args`)."""

from __future__ import annotations

import re
from typing import Any

import torch

from agent.heuristics import WHY, last_user, resolve_args
from agent.state import LLMCall
from crsdata.schema import Role
from tools.detail import attribute_from_text
from tools.dialogue import format_dialogue
from tools.env import ExpertEnv
from tools.preferences import Preferences, empty
from tools.subtasks import DETAIL_SEARCH, ELICITATION, EXPLANATION, RECOMMENDATION, SUBTASKS

REFERS_TO_ITEM = re.compile(r"\b(?:it|its|it's|that one|this one|(?:that|this|the) (?:movie|film|book))\b", re.IGNORECASE)


def wished_now(before: Preferences, after: Preferences) -> str:
    """What the user's new words asked for that the recommenders honour (a genre, a year range, a person),
    as a phrase, or "" when they asked for nothing new.

    >>> wished_now(empty(), {**empty(), "years": [1990, 1999], "years_said": "the 1990s"})
    'the 1990s'
    >>> wished_now({**empty(), "genres": ["drama"]}, {**empty(), "genres": ["drama"]})
    ''
    """
    said = {
        "genres": ", ".join(after.get("genres") or []),
        "years": after.get("years_said") or "",
        "people": ", ".join(after.get("people") or []),
    }
    return next((said[k] for k in ("genres", "years", "people") if after.get(k) and after.get(k) != before.get(k)), "")  # type: ignore[literal-required]


def answered_before(results: list[dict[str, Any]], name: str, args: dict[str, str]) -> bool:
    """Whether an explanation or a detail with these arguments was already given in this conversation
    (an elicitation never repeats a question, a recommendation never an item: they are never "answered").

    >>> answered_before([{"subtask": "explanation", "args": {"item name": "Heat (1995)"}}], "explanation",
    ...                 {"item name": "Heat (1995)", "dialogue context": "..."})
    True
    """
    if name not in (DETAIL_SEARCH, EXPLANATION):
        return False
    return any(r.get("subtask") == name and r.get("args") == answer_key(args) for r in results)


def asks_again(env: ExpertEnv, said: str, name: str, args: dict[str, str]) -> bool:
    """Whether the user's message asks for this answer (sub-task ``name``) again: it names the item, or
    it asks what that sub-task answers about "it": an attribute for a detail ("who wrote it?"; "maybe
    something written by Art Spiegelman?" states a liking), why for an explanation. "What genre is
    it?" after an explanation asks a detail, so repeating the explanation word for word is no answer."""
    if args.get("item name") in env.linker.link(said).items:
        return True
    if name == EXPLANATION:
        return bool(WHY.search(said))
    return bool(attribute_from_text(said) and REFERS_TO_ITEM.search(said))


def answer_key(args: dict[str, str]) -> dict[str, str]:
    """What identifies an answer: the item and the attribute asked about (not the dialogue)."""
    return {k: v for k, v in args.items() if k in ("item name", "item attribute")}


def not_a_repeat(
    name: str,
    distribution: torch.Tensor | None,
    dialogue: list[tuple[Role, str]],
    results: list[dict[str, Any]],
    env: ExpertEnv,
    rec: LLMCall,
) -> tuple[str, dict[str, str]]:
    """The sub-task and its arguments. An answer already given, when the user's message does not ask for it
    again, is a misdetection (e.g. after a rejection): repeating it word for word says nothing new, so the
    manager's next choice (``distribution``, else a recommendation) answers instead, and ``rec`` says why."""
    args = resolve_args(name, dialogue, results, env, format_dialogue(dialogue))  # experts get the whole dialogue
    if not answered_before(results, name, args) or asks_again(env, last_user(dialogue), name, args):
        return name, args
    order = [list(SUBTASKS)[i] for i in torch.argsort(distribution, descending=True).tolist()] if distribution is not None else []
    instead = next(n for n in [*order, RECOMMENDATION] if not answered_before(results, n, resolve_args(n, dialogue, results, env, "")))
    rec["error"] = (
        f"{name} with these arguments was answered earlier in this conversation and the user did not ask again; {instead} instead"
    )
    return instead, resolve_args(instead, dialogue, results, env, format_dialogue(dialogue))


def as_stated(name: str, before: Preferences | None, after: Preferences, rec: LLMCall) -> str:
    """A question (elicitation) turned into a recommendation when the user's new words asked for something the
    recommenders honour (:func:`wished_now`): answering with a question would ignore it. ``rec`` says why."""
    wish = wished_now(before or empty(), after) if name == ELICITATION else ""
    if not wish:
        return name
    rec["error"] = f"the user asked for {wish} this turn: a recommendation, not a question"
    return RECOMMENDATION


def with_filled_args(args: dict[str, str], filled: dict[str, Any] | None, env: ExpertEnv) -> dict[str, str]:
    """The resolved arguments, with the item a capable LLM named when the catalog knows it."""
    named = (filled or {}).get("item name")
    if isinstance(named, str) and env.linker.resolve_item(named):
        return {**args, "item name": env.linker.resolve_item(named) or args.get("item name", "")}
    return args
