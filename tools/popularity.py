"""Popularity recommender: the floor every learned expert must beat."""

from __future__ import annotations

from collections import Counter
from itertools import chain, islice
from typing import Any

from langchain_core.tools import BaseTool

from tools.base import expert_tool
from tools.env import ExpertEnv
from tools.subtasks import RECOMMENDATION


def floor_rank(env: ExpertEnv, dialogue_context: str, top_k: int) -> list[str]:
    """The floor: items by training-split mention count, without those the dialogue already names."""
    named = set(env.mentioned_items(dialogue_context))
    return [n for n in env.ranked_by_popularity if n not in named][:top_k]


def rank_by_preferences(env: ExpertEnv, dialogue_context: str, top_k: int) -> list[str]:
    """Items ranked by (liked people matched, liked genres matched, training popularity).

    Items the dialogue already names, and items of a disliked genre or person, are left out.
    """
    prefs = env.preferences(dialogue_context)
    liked_genres = {g for g in prefs.genres if g not in prefs.disliked}
    liked_people = {p for p in prefs.people if p not in prefs.disliked}
    disliked = set(prefs.disliked)
    for item in prefs.items:  # a liked item lends its genres and people
        if item in disliked:
            continue
        attrs = env.item_attributes.get(item, {})
        liked_genres |= attrs.get("genre", set())
    banned = set(env.mentioned_items(dialogue_context)) | env.items_with_any(disliked)
    # the sort key is (liked people matched, liked genres matched, popularity rank): the items matching
    # nothing follow in popularity order, so only the matching ones are sorted (through the inverted indices)
    people = Counter(i for p in liked_people for i in env.items_by_person.get(p, ()))
    genres = Counter(i for g in liked_genres for i in env.items_by_genre.get(g, ()))
    rank = env.popularity_rank
    matching = sorted((people.keys() | genres.keys()) - banned, key=lambda i: (-people[i], -genres[i], rank[i]))
    taken = set(matching)
    rest = (n for n in env.ranked_by_popularity if n not in banned and n not in taken)
    return list(islice(chain(matching, rest), top_k))


def make_popularity_recommender(env: ExpertEnv) -> BaseTool:
    """The popularity expert of ``env``'s dataset."""

    def popularity_recommender(category: str, dialogue_context: str, top_k: int = 50) -> dict[str, Any]:
        """Popularity recommender: ranks items by how often the training dialogues mention them, first
        restricted to the genres and people the user likes and without anything the user dislikes or
        already named. Architecture: counting, no learning. Domain: the active dataset's items, English.
        Reliable but impersonal; the floor every learned recommender must beat.

        Args:
            category: The item category, e.g. "movie".
            dialogue_context: The dialogue so far, one "User: ..." or "Assistant: ..." line per utterance.
            top_k: How many items to return, best first.
        """
        items = rank_by_preferences(env, dialogue_context, top_k)
        return {"items": items, "text": f"Popular {category}s that fit: {', '.join(items[:3])}."}

    return expert_tool(popularity_recommender, RECOMMENDATION)
