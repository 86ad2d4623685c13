"""Preference elicitation: what the user likes so far, and the next question to ask.

The question is about the attribute whose answer is expected to tell the most about the
candidate items: the user answers with the value they have in mind (a director's name, a genre),
not with one of the examples the question offers, so the information of the answer is the entropy
(in bits) of that attribute's value over the candidates, each grouped by its first value, an item
without the attribute counting as one more outcome. A director or an actor splits 200 popular
movies into a hundred groups (about 7 bits), a genre or a decade into a handful (2-3 bits).
The question offers the three most frequent values as examples. Attributes the user already
stated are asked last.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from langchain_core.tools import BaseTool

from crsdata.schema import Role
from tools.base import expert_tool
from tools.dialogue import parse_dialogue
from tools.env import ExpertEnv
from tools.popularity import rank_by_preferences
from tools.subtasks import ELICITATION

QUESTION = {
    "genre": "Which genre are you in the mood for: {a}, {b} or {c}?",
    "decade": "Do you want something from a particular time, say the {a}, the {b} or the {c}?",
    "director": "Do you have a favourite director, like {a}, {b} or {c}?",
    "cast": "Any actors you enjoy, for example {a}, {b} or {c}?",
}

#: Asked, each once, when no attribute question is left (their keys go into the conversation's ``asked``).
OPEN_QUESTIONS = {
    "loved": "Tell me about a {category} you loved recently, and what you liked about it.",
    "mood": "What else should the {category} have, a mood, a theme or an actor?",
    "disliked": "Is there a {category} you did not like, so that I can steer clear of that kind?",
    "occasion": "Is it for a quiet night on your own, or something to share with friends?",
}
ENOUGH = "I think I know what you like now; ask me for a {category} whenever you are ready."


def answer_information(values: list[str | None]) -> tuple[float, list[str]]:
    """Entropy (bits) of the answer over the candidates' values (``None``, no value, is one outcome),
    and the three most frequent values (the question's examples).

    >>> round(answer_information(["a", "b", "c", "d", "e", "f", "g", "h"])[0], 3)
    3.0
    >>> answer_information(["a", "a"])
    (0.0, ['a'])
    >>> answer_information([None, None, "a", "b"])
    (1.5, ['a', 'b'])
    """
    counts = Counter(values)
    top = [v for v, _ in counts.most_common() if v is not None][:3]
    n = len(values)
    return (sum(c / n * math.log2(n / c) for c in counts.values()) if n else 0.0), top


def asked_attributes(dialogue_context: str) -> set[str]:
    """The attributes the assistant has already asked about (by the opening words of :data:`QUESTION`).

    >>> sorted(asked_attributes("Assistant: Which genre are you in the mood for: a, b or c?\\nUser: comedy"))
    ['genre']
    """
    return attributes_asked_in(parse_dialogue(dialogue_context))


def attributes_asked_in(dialogue: list[tuple[Role, str]]) -> set[str]:
    """:func:`asked_attributes` of a parsed dialogue.

    >>> sorted(attributes_asked_in([("recommender", "Do you have a favourite director, like A, B or C?")]))
    ['director']
    """
    said = " ".join(t for r, t in dialogue if r == "recommender")
    return {key for key, q in QUESTION.items() if q.split("{")[0].strip() in said}


def next_question(env: ExpertEnv, dialogue_context: str, n_candidates: int = 200, asked: list[str] | None = None) -> dict[str, Any]:
    """Preferences so far and the most informative question not asked before (see the module docstring);
    ``asked`` adds the attributes the conversation remembers asking to those the dialogue shows."""
    prefs = env.preferences(dialogue_context)
    candidates = rank_by_preferences(env, dialogue_context, n_candidates)
    stated = {"genre": bool(prefs.genres), "director": bool(prefs.people), "cast": bool(prefs.people), "decade": False}
    asked_before = asked_attributes(dialogue_context) | set(asked or [])
    best: tuple[float, str, list[str], float] | None = None
    for key in QUESTION:
        if key in asked_before:  # never the same question twice
            continue
        firsts = [min(env.item_attributes[c][key], default=None) for c in candidates]
        bits, top = answer_information(firsts)
        score = bits - (10.0 if stated[key] else 0.0)
        if len(top) == 3 and (best is None or score > best[0]):
            best = (score, key, top, bits)
    if best is None:  # every attribute asked: open questions, each once, then an offer to recommend
        fresh = [(key, q.format(category=env.category)) for key, q in OPEN_QUESTIONS.items() if key not in asked_before]
        open_key, text = next(((k, q) for k, q in fresh if q not in dialogue_context), (None, ENOUGH.format(category=env.category)))
        return {"text": text, "preferences": prefs.as_dict(), "attribute": open_key, "options": [], "information_bits": 0.0}
    _, key, top, bits = best
    a, b, c = top
    text = QUESTION[key].format(a=a, b=b, c=c)
    if not prefs.liked_entities():
        text = f"Tell me a {env.category} you loved. {text}"
    return {"text": text, "preferences": prefs.as_dict(), "attribute": key, "options": top, "information_bits": round(bits, 3)}


def make_preference_elicitor(env: ExpertEnv) -> BaseTool:
    """The preference-elicitation expert of ``env``'s dataset."""

    def preference_elicitor(category: str, dialogue_context: str, asked: list[str] | None = None) -> dict[str, Any]:
        """Preference elicitation expert: links the user's words to catalog items, genres and people
        (likes and dislikes) and asks the question whose answer best splits the remaining candidate
        items (information gain over genre, decade, director and cast). Architecture: entity linking
        plus an entropy criterion, no learning. Domain: the active dataset, English.

        Args:
            category: The item category, e.g. "movie".
            dialogue_context: The dialogue so far, one "User: ..." or "Assistant: ..." line per utterance.
            asked: Attributes asked earlier in the conversation (genre, decade, director, cast), also
                those the dialogue no longer shows; they are not asked again.
        """
        return next_question(env, dialogue_context, asked=asked)

    return expert_tool(preference_elicitor, ELICITATION)
