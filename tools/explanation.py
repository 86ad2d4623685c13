"""Explanation: why an item suits the user, from shared attributes and knowledge-graph paths."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool

from tools.base import expert_tool
from tools.env import ExpertEnv
from tools.subtasks import EXPLANATION

#: Evidence weights: a shared director says more than a shared genre.
WEIGHTS = {"director": 3.0, "writer": 2.0, "cast": 2.0, "genre": 1.0}


def explain(env: ExpertEnv, item_name: str, dialogue_context: str, max_evidence: int = 3) -> dict[str, Any]:
    """Ranked evidence linking ``item_name`` to what the user likes, and a sentence built from it."""
    item = env.linker.resolve_item(item_name) if item_name.strip() else None
    if item is None:
        what = f'"{item_name}"' if item_name.strip() else "that"
        return {"text": f"I don't know {what} well enough to explain it; which title do you mean?", "item": None, "evidence": []}
    attrs = env.item_attributes.get(item, {})
    prefs = env.preferences(dialogue_context)
    evidence: list[tuple[float, str, list[str]]] = []
    for liked in prefs.items:
        if liked == item or liked in prefs.disliked:
            continue
        other = env.item_attributes.get(liked, {})
        for key, weight in WEIGHTS.items():
            shared = sorted(attrs.get(key, set()) & other.get(key, set()))
            if key == "genre" and shared:  # the shared genres in one piece: "both are drama and romance movies"
                kinds = " and ".join(shared[:2])
                evidence.append((weight + 0.5 * (len(shared) - 1), f"{item} and {liked} are both {kinds} {env.category}s",
                                 [item, key, shared[0], key, liked]))  # fmt: skip
                continue
            for value in shared:
                verb = {"director": "directed", "writer": "wrote", "cast": "stars in"}[key]
                evidence.append((weight, f"{value} {verb} both {item} and {liked}", [item, key, value, key, liked]))
    for genre in prefs.genres:
        if genre in attrs.get("genre", set()) and genre not in prefs.disliked:
            evidence.append((1.5, f"{item} is a {genre} {env.category}, as you asked", [item, "genre", genre]))
    for person in prefs.people:
        for key in ("director", "cast", "writer"):
            if person in attrs.get(key, set()) and person not in prefs.disliked:
                evidence.append((3.5, f"{person} is among its {key}", [item, key, person]))
    evidence.sort(key=lambda e: -e[0])
    seen: set[str] = set()  # one piece per value: "Martin Scorsese directed both ..." says it; "... wrote both ..." repeats him
    top = [e for e in evidence if not (e[2][2] in seen or seen.add(e[2][2]))][:max_evidence]  # type: ignore[func-returns-value]
    if top:
        said = ", and ".join(e[1] for e in top[:2])  # one sentence: two pieces at most
        text = f"{said[:1].upper()}{said[1:]}."
    else:
        genres = ", ".join(sorted(attrs.get("genre", set()))[:2]) or env.category
        pop = env.popularity.get(item, 0)
        text = f"{item} is a {genres} {env.category}" + (f" that came up {pop} times in other users' conversations." if pop else ".")
    return {"text": text, "item": item, "evidence": [{"weight": w, "reason": r, "path": p} for w, r, p in top]}


def strongest_reason(env: ExpertEnv, item_name: str, dialogue_context: str) -> str | None:
    """The strongest piece of evidence that ``item_name`` suits the user, as a sentence, or None when
    the item shares nothing with what the user said (a recommendation's grounded reason).

    Args:
        env: The dataset's environment.
        item_name: The recommended item.
        dialogue_context: The dialogue so far, one "User: ..." or "Assistant: ..." line per utterance.
    """
    evidence = explain(env, item_name, dialogue_context, max_evidence=1)["evidence"]
    if not evidence:
        return None
    text = str(evidence[0]["reason"])
    return f"{text[:1].upper()}{text[1:]}."


def catalog_phrase(env: ExpertEnv, item_name: str) -> str | None:
    """What the catalog says of an item, as a phrase after its name: "a crime and drama movie directed
    by Michael Mann" (a book: "by" its writer; a film with no director: "starring" its first two cast
    members), or ``None`` when the catalog has none of these facts.

    Args:
        env: The dataset's environment.
        item_name: The item, as the catalog names it.
    """
    item = env.catalog.get(env.dataset, item_name)
    if item is None:
        return None
    genres = [g.lower() for g in item.get("genre")[:2]]
    kind = f"{' and '.join(genres)} {env.category}" if genres else env.category
    year = env.year_of.get(item_name)
    when = f" from {year}" if year and f"({year})" not in item_name else ""
    director, cast, writer = item.get("director")[:1], item.get("cast")[:2], item.get("writer")[:1]
    if env.category == "book":
        who = f" by {writer[0]}" if writer else ""
    else:
        who = f" directed by {director[0]}" if director else f" starring {' and '.join(cast)}" if cast else ""
    if not (genres or when or who):
        return None
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}{when}{who}"


def make_explainer(env: ExpertEnv) -> BaseTool:
    """The explanation expert of ``env``'s dataset."""

    def kg_explainer(item_name: str, dialogue_context: str) -> dict[str, Any]:
        """Explanation expert: explains why an item suits the user by the knowledge-graph paths and
        attributes it shares with what the user said they like (same director, writer, cast or genre),
        ranked by strength, with the evidence. Architecture: entity linking plus KG path ranking, no
        learning. Domain: the active dataset, English.

        Args:
            item_name: The item to explain, e.g. the one recommended last turn.
            dialogue_context: The dialogue so far, one "User: ..." or "Assistant: ..." line per utterance.
        """
        return explain(env, item_name, dialogue_context)

    return expert_tool(kg_explainer, EXPLANATION)
