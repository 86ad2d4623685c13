"""OpenDialKG's book dialogues (``dialog_Books.jsonl``); the books' writer, genres and year come from its
knowledge graph."""

from __future__ import annotations

from pathlib import Path

from crsdata.catalog import named_items
from crsdata.datasets.opendialkg import REMOTE
from crsdata.io import read_json, read_jsonl
from crsdata.loaders import SEEKER_ROLES, from_turn_lists, norm_name, seeded_split
from crsdata.registry import CatalogRows, DatasetSpec, register
from crsdata.schema import SPLITS, Dialogue

NAME = "opendialkg_books"


def load(folder: Path, split: str) -> list[Dialogue]:
    """80/10/10% of the dialogues, seeded."""
    path = folder / "dialog_Books.jsonl"
    convs = [(str(lineno), conv) for lineno, conv in read_jsonl(path, NAME)]
    parts: dict[str, set[str]] = dict(zip(SPLITS, seeded_split([c[0] for c in convs], (0.8, 0.1, 0.1)), strict=True))
    keep = parts[split]
    return from_turn_lists(NAME, split, (c for c in convs if c[0] in keep), SEEKER_ROLES, ("role", "text", "item", "entity"), path)


def item_names(folder: Path) -> frozenset[str]:
    """Every book a dialogue names."""
    names: set[str] = set()
    for _, conv in read_jsonl(folder / "dialog_Books.jsonl", NAME):
        names.update(norm_name(x) for u in conv for x in u.get("item", []))
    return frozenset(names)


def catalog(folder: Path, spec: DatasetSpec) -> CatalogRows:
    """One row per book, filled with the writer, genres, language and year OpenDialKG's knowledge graph gives
    it; the graph's triples about the books (``(book, relation, value)``)."""
    items, _ = named_items(spec, folder.parent)
    ent2id = read_json(folder / "entity2id.json", NAME)
    id2ent = {int(v): k for k, v in ent2id.items()}
    id2rel = {int(v): k for k, v in read_json(folder / "relation2id.json", NAME).items()}
    kg = read_json(folder / "kg.json", NAME)
    keys = {"writer": "writer", "genre": "genre", "language": "language"}
    triples: list[tuple[str, str, str]] = []
    for item in items:
        eid = ent2id.get(item["name"])
        if eid is None:
            continue
        attrs: dict[str, list[str]] = {}
        for rel, tail in kg.get(str(eid), []):
            r, t = id2rel.get(int(rel)), id2ent.get(int(tail))
            if not r or not t:
                continue
            t = norm_name(t)
            triples.append((item["name"], r, t))
            if r == "year" and t.isdigit() and not item["year"]:
                item["year"] = int(t)
            elif r in keys and t not in attrs.setdefault(keys[r], []):
                attrs[keys[r]].append(t)
        item["attributes"] = {k: v for k, v in attrs.items() if v}
    return items, list(dict.fromkeys(triples))


SPEC = register(
    DatasetSpec(
        name=NAME,
        load=load,
        item_names=item_names,
        catalog=catalog,
        files=("dialog_Books.jsonl", "kg.json", "entity2id.json", "relation2id.json"),
        folder="opendialkg",
        remote=REMOTE,
        category="book",
        domain="books",
        splits="80/10/10% of dialog_Books.jsonl's dialogues, seeded",
    )
)
