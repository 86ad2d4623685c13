"""Rules used where the LLM is not: the deterministic fallback of sub-task detection, argument
resolution from the dialogue and earlier results, and the labels of demonstrations."""

from __future__ import annotations

import re
from typing import Any

from crsdata.schema import Role
from tools.detail import attribute_from_text
from tools.env import ExpertEnv
from tools.preferences import asked_years
from tools.subtasks import DETAIL_SEARCH, ELICITATION, EXPLANATION, RECOMMENDATION

WHY = re.compile(r"\b(why|what makes|explain)\b", re.I)
QUESTION_ABOUT = re.compile(r"\b(who|when|what|which|tell me (more )?about|is it|was it)\b", re.I)


def last_user(dialogue: list[tuple[Role, str]]) -> str:
    """The latest user utterance ('' if none)."""
    return next((t for r, t in reversed(dialogue) if r == "user"), "")


def previous_item(dialogue: list[tuple[Role, str]], results: list[dict[str, Any]], env: ExpertEnv) -> str | None:
    """The item the conversation is about: named in the last user turn, else the last result's item,
    else the last item the assistant named."""
    items = env.linker.link(last_user(dialogue)).items
    if items:
        return items[-1]
    for res in reversed(results):
        out = res.get("output") or {}
        if out.get("item"):
            return str(out["item"])
        if out.get("items"):
            return str(out["items"][0])
    for role, text in reversed(dialogue):
        if role == "recommender":
            named = env.linker.link(text).items
            if named:
                return named[-1]
    return None


def heuristic_subtask(dialogue: list[tuple[Role, str]], results: list[dict[str, Any]], env: ExpertEnv) -> str:
    """The deterministic fallback of detection.

    "why ..." about a known item -> explanation; a question about an attribute of a named item ->
    item detail search; no preference stated yet (nothing liked, no years asked for) -> elicitation;
    otherwise recommendation.
    """
    text = last_user(dialogue)
    item = previous_item(dialogue, results, env)
    if WHY.search(text) and item:
        return EXPLANATION
    if item and attribute_from_text(text) and QUESTION_ABOUT.search(text) and env.linker.link(text).items:
        return DETAIL_SEARCH
    prefs = env.linker.link_dialogue([t for r, t in dialogue if r == "user"])
    if not prefs.liked_entities() and not any(asked_years(t, env.newest_year, None) for r, t in dialogue if r == "user"):
        return ELICITATION  # nothing liked and no years asked for ("something from the 80s" is a wish)
    return RECOMMENDATION


DETAIL_CUES = re.compile(
    r"\b(review|reviews|rating|rated|critics?|received|gory|scary|version|sequel|who else|(tell me|know) (anything|a little|more)? ?about)\b",
    re.I,
)
ASKS = re.compile(r"\?|^\s*(who|what|when|which|where|how|is|does|did|was|were|are|has|have)\b", re.I)
REFERS_BACK = re.compile(r"\b(it|that|this one|that one|the movie|the film|the book)\b", re.I)


def asks_about_item(context: list[tuple[Role, str]], env: ExpertEnv) -> bool:
    """Whether the last user turn asks a factual question about an item, named or referred to ("it", "that one")."""
    text = last_user(context)
    if not ASKS.search(text) or not (attribute_from_text(text) or DETAIL_CUES.search(text)):
        return False
    if env.linker.link(text).items:
        return True
    return bool(REFERS_BACK.search(text)) and previous_item(context[:-1], [], env) is not None


def label_turn(context: list[tuple[Role, str]], response: str, targets: tuple[str, ...], env: ExpertEnv) -> str:
    """Sub-task label of a corpus recommender turn, from its reference response (for demonstrations and the
    manager's training data).

    Checked by hand on 100 validation turns per dataset (README): only *new* catalog items count as a
    recommendation (a target the dialogue already named, or a genre, is not one), and a factual question
    about an item, named or referred to, is item detail search even when the answer names the item.
    """
    text = last_user(context)
    mentioned = set(env.linker.link(" ".join(t for _, t in context)).items)
    new = [t for t in targets if t in env.item_attributes and t not in mentioned]
    if asks_about_item(context, env) and not new:
        return DETAIL_SEARCH
    if new:
        return EXPLANATION if WHY.search(text) else RECOMMENDATION
    if WHY.search(text):
        return EXPLANATION
    if attribute_from_text(text) and QUESTION_ABOUT.search(text) and env.linker.link(text).items:
        return DETAIL_SEARCH
    if response.strip().endswith("?"):
        return ELICITATION
    return ELICITATION if not env.linker.link(response).items else RECOMMENDATION


def resolve_args(
    name: str, dialogue: list[tuple[Role, str]], results: list[dict[str, Any]], env: ExpertEnv, dialogue_text: str
) -> dict[str, str]:
    """Schema arguments of sub-task ``name`` from the dialogue and earlier results."""
    args = {"category": env.category, "dialogue context": dialogue_text}
    if name in (EXPLANATION, DETAIL_SEARCH):
        args["item name"] = previous_item(dialogue, results, env) or ""
    if name == DETAIL_SEARCH:
        args["item attribute"] = attribute_from_text(last_user(dialogue)) or "plot"
    return args
