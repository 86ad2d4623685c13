"""What the experts of one dataset share: the catalog, the entity linker and training-split popularity."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from crsdata.catalog import Catalog, Item
from crsdata.loaders import load_dialogues
from crsdata.paths import data_root
from crsdata.registry import dataset_spec
from tools.dialogue import user_texts
from tools.linking import EntityLinker, Mentions
from tools.retrieval import ItemIndex


@dataclass
class ExpertEnv:
    """Shared resources of the experts for one dataset."""

    dataset: str
    root: Path
    catalog: Catalog
    linker: EntityLinker
    popularity: Counter[str]
    _years_memo: dict[tuple[int | None, int | None], frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    _years_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @cached_property
    def catalog_items(self) -> list[Item]:
        """The dataset's catalog items, read once (the attribute, year and film indices below share them)."""
        return self.catalog.all_items(self.dataset)

    @cached_property
    def item_attributes(self) -> dict[str, dict[str, set[str]]]:
        """Item name -> canonical attribute -> values (genre, director, cast, writer, decade)."""
        out: dict[str, dict[str, set[str]]] = {}
        for item in self.catalog_items:
            attrs = {k: set(item.get(k)) for k in ("genre", "director", "cast", "writer")}
            attrs["decade"] = {f"{item.year // 10 * 10}s"} if item.year else set()
            out[item.name] = attrs
        return out

    @cached_property
    def year_of(self) -> dict[str, int | None]:
        """Item name -> its year; a catalog entry without one takes its film's (``film_key``)."""
        years = {item.name: item.year for item in self.catalog_items}
        by_key = {self.film_key[n]: y for n, y in years.items() if y}
        return {n: y or by_key.get(self.film_key[n]) for n, y in years.items()}

    @cached_property
    def film_key(self) -> dict[str, str]:
        """Item name -> the key of its film: the catalog's entries of one film share it.

        Entries with the same title (case and punctuation aside) and the same year are one film
        ("MegaMind" / "Megamind"); an entry without a year is the film of that title with a year, the
        most mentioned in training if there are several ("Titanic" -> "Titanic (1997)"; "Scream" ->
        "Scream (1996)", not the 1981 one). Dated entries of one title are different films (remakes).
        """
        from tools.linking import norm

        items = self.catalog_items
        dated: dict[str, list[tuple[int, str]]] = {}
        for item in items:
            if item.year:
                dated.setdefault(norm(item.title), []).append((item.year, item.name))
        out: dict[str, str] = {}
        for item in items:
            title = norm(item.title)
            if item.year:
                out[item.name] = f"{title} ({item.year})"
            elif title in dated:
                year, _ = max(dated[title], key=lambda yn: (self.popularity.get(yn[1], 0), yn[1]))
                out[item.name] = f"{title} ({year})"
            else:
                out[item.name] = title
        return out

    @cached_property
    def newest_year(self) -> int:
        """The catalog's newest year ("recent" counts back from it)."""
        return max((y for y in self.year_of.values() if y), default=2020)

    def items_between(self, first: int | None, last: int | None) -> frozenset[str]:
        """The items from year ``first`` to ``last`` (inclusive; ``None``: open), memoised by range."""
        if (first, last) not in self._years_memo:
            lo, hi = first if first is not None else -9999, last if last is not None else 9999
            with self._years_lock:  # server threads: the memo is written whole, never half
                self._years_memo[(first, last)] = frozenset(i for i, y in self.year_of.items() if y is not None and lo <= y <= hi)
        return self._years_memo[(first, last)]

    def facts_of(self, item: str) -> list[str]:
        """The item's catalog facts as strings (genres, people, year): what a reply may truly say of it."""
        attrs = self.item_attributes.get(item, {})
        year = self.year_of.get(item)
        return [v for key in ("genre", "director", "cast", "writer") for v in sorted(attrs.get(key, ()))] + ([str(year)] if year else [])

    def genres_of(self, item: str) -> set[str]:
        """The item's genres (empty for an unknown item)."""
        return self.item_attributes.get(item, {}).get("genre", set())

    @cached_property
    def people_of(self) -> dict[str, frozenset[str]]:
        """Item name -> its director, cast and writers (computed once: every ranking reads it)."""
        return {name: frozenset(a["director"] | a["cast"] | a["writer"]) for name, a in self.item_attributes.items()}

    @cached_property
    def writers(self) -> dict[str, str]:
        """Normalised name -> writer (names of two words or more), for wishes that ask for a writer."""
        from tools.linking import norm

        return {norm(w): w for a in self.item_attributes.values() for w in a.get("writer", ()) if len(norm(w).split()) >= 2}

    @cached_property
    def items_by_person(self) -> dict[str, frozenset[str]]:
        """Person -> the items they directed, wrote or play in."""
        return _inverted(self.people_of)

    @cached_property
    def items_by_genre(self) -> dict[str, frozenset[str]]:
        """Genre -> its items."""
        return _inverted({name: a["genre"] for name, a in self.item_attributes.items()})

    def items_with_any(self, values: set[str]) -> set[str]:
        """Items having any of ``values`` as a genre or a person (what a dislike removes)."""
        return {i for v in values for i in (*self.items_by_person.get(v, ()), *self.items_by_genre.get(v, ()))}

    @cached_property
    def genre_columns(self) -> tuple[dict[str, int], np.ndarray]:
        """(genre -> column, a 0/1 matrix of the items in popularity order by genre)."""
        genres = sorted(self.items_by_genre)
        column = {g: c for c, g in enumerate(genres)}
        matrix = np.zeros((len(self.ranked_by_popularity), len(genres)), dtype=np.int32)
        for r, name in enumerate(self.ranked_by_popularity):
            for g in self.item_attributes[name]["genre"]:
                matrix[r, column[g]] = 1
        return column, matrix

    @cached_property
    def popularity_rank(self) -> dict[str, int]:
        """Item -> its position in :attr:`ranked_by_popularity`."""
        return {name: r for r, name in enumerate(self.ranked_by_popularity)}

    @cached_property
    def ranked_by_popularity(self) -> list[str]:
        """Catalog items, most mentioned in training first (ties by name)."""
        return sorted(self.item_attributes, key=lambda n: (-self.popularity.get(n, 0), n))

    @property
    def category(self) -> str:
        """The item category of the dataset (``movie`` or ``book``)."""
        return dataset_spec(self.dataset).category

    def preferences(self, dialogue_context: str) -> Mentions:
        """Linked likes and dislikes over the user's utterances."""
        return self.linker.link_dialogue(user_texts(dialogue_context))

    def mentioned_items(self, dialogue_context: str) -> list[str]:
        """Every catalog item the dialogue names, either side."""
        return self.linker.link(dialogue_context).items


def _inverted(values_of: Mapping[str, AbstractSet[str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for item, values in values_of.items():
        for v in values:
            out.setdefault(v, set()).add(item)
    return {v: frozenset(items) for v, items in out.items()}


def training_popularity(dataset: str, root: Path) -> Counter[str]:
    """Item mention counts over the training split's dialogues."""
    counts: Counter[str] = Counter()
    for dlg in load_dialogues(dataset, "train", root):
        for turn in dlg.turns:
            counts.update(turn.items)
    return counts


@lru_cache(maxsize=8)
def expert_env(dataset: str = "redial", root: str | None = None, catalog_url: str | None = None) -> ExpertEnv:
    """The (cached) environment of a dataset; builds its catalog on first use."""
    base = data_root(root)
    catalog = Catalog(catalog_url, base)
    catalog.ensure(dataset)
    pop = training_popularity(dataset, base)
    return ExpertEnv(dataset, base, catalog, EntityLinker(catalog, dataset, pop), pop)


def item_index(env: ExpertEnv, folder: str | None = None, tag: str = "") -> ItemIndex:
    """The sentence-embedding index of the dataset's items (built and cached on first use).

    Args:
        env: The dataset's environment.
        folder: A fine-tuned encoder folder (the trained retriever); the shipped encoder when ``None``.
        tag: What identifies the encoder's weights (part of the embeddings' cache key).
    """
    key = (env.dataset, str(env.root), folder, tag)
    if key not in _INDEXES:
        _INDEXES[key] = ItemIndex(env.catalog.all_items(env.dataset), folder=folder, tag=tag)
    return _INDEXES[key]


_INDEXES: dict[tuple[str, str, str | None, str], ItemIndex] = {}
