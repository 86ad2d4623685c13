"""Popularity recommender: the floor every learned expert must beat."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from langchain_core.tools import BaseTool

from tools.base import expert_tool
from tools.env import ExpertEnv
from tools.preferences import stated_first
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
    # the sort key is (liked people matched, liked genres matched, popularity rank), over arrays in
    # popularity order: genres from the item-by-genre matrix, people through the inverted index
    rank, order = env.popularity_rank, env.ranked_by_popularity
    column, matrix = env.genre_columns
    genres = matrix[:, [column[g] for g in liked_genres if g in column]].sum(1)
    people = np.zeros(len(order), dtype=np.int64)
    for item, n in Counter(i for p in liked_people for i in env.items_by_person.get(p, ())).items():
        people[rank[item]] = n
    allowed = np.ones(len(order), dtype=bool)
    allowed[[rank[i] for i in banned if i in rank]] = False
    positions = np.flatnonzero(allowed)
    best = positions[np.lexsort((positions, -genres[positions], -people[positions]))][:top_k]
    return [order[i] for i in best]


def make_popularity_recommender(env: ExpertEnv) -> BaseTool:
    """The popularity expert of ``env``'s dataset."""

    def popularity_recommender(category: str, dialogue_context: str, top_k: int = 50) -> dict[str, Any]:
        """Popularity recommender: ranks items by how often the training dialogues mention them, first
        restricted to the genres and people the user likes and without anything the user dislikes or
        already named; the genres, people and years the user asks for filter it. Architecture: counting, no learning. Domain: the active dataset's items, English.
        Reliable but impersonal; the floor every learned recommender must beat.

        Args:
            category: The item category, e.g. "movie".
            dialogue_context: The dialogue so far, one "User: ..." or "Assistant: ..." line per utterance.
            top_k: How many items to return, best first.
        """
        items = stated_first(env, dialogue_context, lambda n: rank_by_preferences(env, dialogue_context, n), top_k)
        return {"items": items, "text": f"Popular {category}s that fit: {', '.join(items[:3])}."}

    return expert_tool(popularity_recommender, RECOMMENDATION)
