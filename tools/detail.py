"""Item detail search: the catalog lookup."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.tools import BaseTool

from tools.base import expert_tool
from tools.env import ExpertEnv
from tools.subtasks import DETAIL_SEARCH

ATTRIBUTE_WORDS = {
    "director": ("director", "directed", "directs", "filmmaker", "made it", "made by"),
    "cast": ("cast", "actor", "actors", "actress", "star", "stars", "starring", "starred", "who is in", "who's in", "plays"),
    "writer": ("writer", "wrote", "written", "screenplay", "author"),
    "year": ("year", "when", "released", "release", "came out", "old is", "how old"),
    "genre": ("genre", "kind of", "type of", "what sort"),
    "plot": ("plot", "about", "story", "summary", "synopsis", "what happens"),
    "language": ("language",),
}


YEAR_SUFFIX = re.compile(r" \(\d{4}\)$")


def attribute_from_text(text: str) -> str | None:
    """The catalog attribute a question asks about, if any.

    >>> attribute_from_text("Who directed it?"), attribute_from_text("what is it about"), attribute_from_text("hello")
    ('director', 'plot', None)
    """
    low = text.lower()
    for key, words in ATTRIBUTE_WORDS.items():
        if any(re.search(r"(?<!\w)" + re.escape(w) + r"(?!\w)", low) for w in words):
            return key
    return None


def _listed(values: list[str]) -> str:
    """ "A", "A and B", "A, B and C".

    >>> _listed(["A"]), _listed(["A", "B", "C"])
    ('A', 'A, B and C')
    """
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} and {values[-1]}"


def detail_sentence(name: str, key: str, values: list[str], category: str = "movie") -> str:
    """One sentence that answers a question about ``key`` of the item ``name`` from its catalog values.

    >>> detail_sentence("Black Panther (2018)", "director", ["Ryan Coogler"])
    'Black Panther (2018) was directed by Ryan Coogler.'
    >>> detail_sentence("The Wedding Singer (1998)", "year", ["1998"])
    'The Wedding Singer came out in 1998.'
    >>> detail_sentence("Heat (1995)", "cast", ["Al Pacino", "Robert De Niro", "Val Kilmer", "Jon Voight"])
    'Heat (1995) stars Al Pacino, Robert De Niro and Val Kilmer.'
    >>> detail_sentence("Heat (1995)", "genre", ["action", "crime"])
    'Heat (1995) is an action and crime movie.'
    """
    if key == "year":
        verb = "was published" if category == "book" else "came out"
        return f"{YEAR_SUFFIX.sub('', name)} {verb} in {values[0]}."
    if key == "plot":
        first = re.split(r"(?<=[.!?])\s+", values[0].strip())[0]
        return f"Here is what {name} is about: {first}" + ("" if first[-1:] in ".!?" else ".")
    if key == "genre":
        kind = f"{_listed([v.lower() for v in values[:3]])} {category}"
        return f"{name} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}."
    if key == "language":
        return f"{name} is in {_listed(values[:3])}."
    verb = {"director": "was directed by", "cast": "stars", "writer": "was written by"}.get(key, f"has {key}")
    return f"{name} {verb} {_listed(values[:3])}."


def make_catalog_search(env: ExpertEnv) -> BaseTool:
    """The item-detail-search expert of ``env``'s dataset."""

    def catalog_search(item_name: str, item_attribute: str) -> dict[str, Any]:
        """Catalog database lookup: finds the item by fuzzy name match and returns the asked attribute
        (director, cast, writer, year, genre, plot, language) from the dataset's item metadata. Architecture:
        SQL catalog with fuzzy title matching, no learning. Domain: the active dataset's items, English.
        Exact where the metadata has the attribute; says so when it does not.

        Args:
            item_name: The item's name or title, e.g. "The Shining".
            item_attribute: What to look up: director, cast, writer, year, genre, plot or language.
        """
        if not item_name.strip():
            return {
                "text": "Which title do you mean? I need a name to look it up.",
                "item": None,
                "attribute": item_attribute,
                "values": [],
            }
        hits = env.catalog.search_title(env.dataset, item_name, limit=1, min_score=75)
        if not hits:
            return {
                "text": f'I could not find a {env.category} called "{item_name}" in the catalog.',
                "item": None,
                "attribute": item_attribute,
                "values": [],
            }
        item = hits[0][0]
        key = attribute_from_text(item_attribute) or item_attribute.strip().lower()
        if key not in ATTRIBUTE_WORDS:
            known = ", ".join(ATTRIBUTE_WORDS)
            return {"text": f"I can tell you the {known} of {item.name}.", "item": item.name, "attribute": item_attribute, "values": []}
        values = item.get(key)
        if not values:
            return {"text": f"The catalog has no {key} for {item.name}.", "item": item.name, "attribute": key, "values": []}
        return {"text": detail_sentence(item.name, key, values, env.category), "item": item.name, "attribute": key, "values": values}

    return expert_tool(catalog_search, DETAIL_SEARCH)
