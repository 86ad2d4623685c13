"""The item catalog: an embedded SQLite database (any SQLAlchemy URL works) of items and KG triples.

Built from each dataset's item metadata and knowledge graph with one idempotent
command (``python -m crsdata build-catalog``). Title lookup is fuzzy
(rapidfuzz); attribute lookup uses an indexed attribute table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rapidfuzz import fuzz, process, utils

from crsdata.io import read_json
from crsdata.loaders import item_names, norm_name
from crsdata.paths import DataError, data_root, home_dir
from crsdata.registry import CatalogRows, DatasetSpec, dataset_spec

ENV_CATALOG_URL = "LLMCRS_CATALOG_URL"
YEAR = re.compile(r"\((\d{4})\)\s*$")
#: Canonical attribute keys and the source keys that feed them.
ATTRIBUTE_KEYS = {
    "genre": ("genre",),
    "director": ("director",),
    "cast": ("star", "actor", "cast"),
    "writer": ("writer",),
    "language": ("language",),
    "year": ("year",),
    "plot": ("plot",),
}
LIST_KEYS = ("genre", "director", "cast", "writer", "language")

metadata = sa.MetaData()
items_t = sa.Table(
    "items",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("dataset", sa.String(32), nullable=False),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("title", sa.String(512), nullable=False),
    sa.Column("year", sa.Integer),
    sa.Column("plot", sa.Text),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.UniqueConstraint("dataset", "item_id"),
    sa.Index("ix_items_name", "dataset", "name"),
)
attrs_t = sa.Table(
    "item_attributes",
    metadata,
    sa.Column("dataset", sa.String(32), nullable=False),
    sa.Column("item_pk", sa.Integer, sa.ForeignKey("items.pk"), nullable=False),
    sa.Column("key", sa.String(32), nullable=False),
    sa.Column("value", sa.String(512), nullable=False),
    sa.Column("value_norm", sa.String(512), nullable=False),
    sa.Index("ix_attr_lookup", "dataset", "key", "value_norm"),
    sa.Index("ix_attr_item", "item_pk"),
)
triples_t = sa.Table(
    "kg_triples",
    metadata,
    sa.Column("dataset", sa.String(32), nullable=False),
    sa.Column("head", sa.String(512), nullable=False),
    sa.Column("relation", sa.String(64), nullable=False),
    sa.Column("tail", sa.String(512), nullable=False),
    sa.Index("ix_triples_head", "dataset", "head"),
    sa.Index("ix_triples_tail", "dataset", "tail"),
)
builds_t = sa.Table(
    "builds",
    metadata,
    sa.Column("dataset", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("n_items", sa.Integer, nullable=False),
)


@dataclass(frozen=True)
class Item:
    """A catalog item."""

    dataset: str
    item_id: str
    name: str
    title: str
    year: int | None
    plot: str | None
    attributes: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    def get(self, key: str) -> list[str]:
        """Values of a canonical attribute (``genre``, ``director``, ``cast`` ...)."""
        if key == "year":
            return [str(self.year)] if self.year else []
        if key == "plot":
            return [self.plot] if self.plot else []
        return list(self.attributes.get(key, []))


def split_title(name: str) -> tuple[str, int | None]:
    """``"Heat (1995)"`` -> ``("Heat", 1995)``; a name without a year keeps it ``None``."""
    m = YEAR.search(name)
    if not m:
        return name, None
    return name[: m.start()].strip(), int(m.group(1))


ARTICLE = re.compile(r"^(the|a|an) ")


def title_key(name: str) -> str:
    """What title search compares: lower-case words of the title, year and leading article removed.

    >>> title_key("The Shining  (1980)"), title_key("Heat"), title_key("A Quiet Place (2018)")
    ('shining', 'heat', 'quiet place')
    """
    return ARTICLE.sub("", utils.default_process(split_title(norm_name(name))[0]))


def default_url() -> str:
    """``LLMCRS_CATALOG_URL`` or an SQLite file under the llmcrs home directory."""
    return os.environ.get(ENV_CATALOG_URL) or f"sqlite:///{home_dir() / 'catalog.sqlite'}"


class Catalog:
    """Item catalog over a SQL database.

    Args:
        url: SQLAlchemy URL; defaults to :func:`default_url`.
        root: Data root used when building.
    """

    def __init__(self, url: str | None = None, root: str | Path | None = None) -> None:
        self.url = url or default_url()
        self.engine = sa.create_engine(self.url)
        metadata.create_all(self.engine)
        self._root = root
        self._names: dict[str, dict[int, str]] = {}
        self._keys: dict[str, tuple[dict[int, str], dict[str, set[int]]]] = {}
        self._values: dict[tuple[str, str], list[str]] = {}

    # ---- building ------------------------------------------------------------------------

    def build(self, datasets: list[str] | None = None, force: bool = False) -> dict[str, int]:
        """Build (or rebuild when the source files changed) the catalog of each dataset.

        Returns:
            Number of items per dataset built or already present.
        """
        base = data_root(self._root)
        from crsdata.loaders import available_datasets

        out = {}
        for ds in datasets or available_datasets(base):
            spec = dataset_spec(ds)
            sources = [spec.path(base) / name for name in spec.files]
            digest = hashlib.sha256()
            for src in sources:
                if src.exists():
                    digest.update(src.name.encode())
                    digest.update(src.read_bytes())
            fp = digest.hexdigest()
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(builds_t).where(builds_t.c.dataset == ds)).first()
                if row is not None and row.fingerprint == fp and not force:
                    out[ds] = row.n_items
                    continue
                items, triples = spec.catalog(spec.path(base), spec) if spec.catalog else named_items(spec, base)
                self._replace(conn, ds, items, triples, fp)
                out[ds] = len(items)
            self._names.pop(ds, None)
            self._keys.pop(ds, None)
            self._values = {k: v for k, v in self._values.items() if k[0] != ds}
        return out

    def _replace(self, conn: sa.Connection, ds: str, items: list[dict[str, Any]], triples: list[tuple[str, str, str]], fp: str) -> None:
        conn.execute(attrs_t.delete().where(attrs_t.c.dataset == ds))
        conn.execute(items_t.delete().where(items_t.c.dataset == ds))
        conn.execute(triples_t.delete().where(triples_t.c.dataset == ds))
        conn.execute(builds_t.delete().where(builds_t.c.dataset == ds))
        if items:
            conn.execute(items_t.insert(), [{"dataset": ds, **it} for it in items])
        pks = dict(conn.execute(sa.select(items_t.c.item_id, items_t.c.pk).where(items_t.c.dataset == ds)).all())
        rows = []
        for it in items:
            pk = pks[it["item_id"]]
            for key, values in it["attributes"].items():
                if key in LIST_KEYS:
                    rows += [{"dataset": ds, "item_pk": pk, "key": key, "value": v, "value_norm": v.lower()} for v in values]
            if it["year"]:
                rows.append({"dataset": ds, "item_pk": pk, "key": "year", "value": str(it["year"]), "value_norm": str(it["year"])})
        if rows:
            conn.execute(attrs_t.insert(), rows)
        if triples:
            conn.execute(triples_t.insert(), [{"dataset": ds, "head": h, "relation": r, "tail": t} for h, r, t in triples])
        conn.execute(builds_t.insert().values(dataset=ds, fingerprint=fp, n_items=len(items)))

    def ensure(self, dataset: str) -> None:
        """Build the dataset's catalog if it has never been built."""
        with self.engine.connect() as conn:
            if conn.execute(sa.select(builds_t.c.dataset).where(builds_t.c.dataset == dataset)).first() is None:
                self.build([dataset])

    # ---- queries ------------------------------------------------------------------------

    def _item(self, row: Any) -> Item:
        attrs = row.attributes if isinstance(row.attributes, dict) else json.loads(row.attributes)
        return Item(row.dataset, row.item_id, row.name, row.title, row.year, row.plot, attrs)

    def _name_index(self, dataset: str) -> dict[int, str]:
        if dataset not in self._names:
            with self.engine.connect() as conn:
                self._names[dataset] = dict(conn.execute(sa.select(items_t.c.pk, items_t.c.name).where(items_t.c.dataset == dataset)).all())
        return self._names[dataset]

    def count(self, dataset: str) -> int:
        """Number of items of a dataset in the catalog."""
        return len(self._name_index(dataset))

    def by_pks(self, pks: list[int]) -> list[Item]:
        """Items by primary key, in the given order."""
        if not pks:
            return []
        with self.engine.connect() as conn:
            rows = {r.pk: r for r in conn.execute(sa.select(items_t).where(items_t.c.pk.in_(pks)))}
        return [self._item(rows[p]) for p in pks if p in rows]

    def get(self, dataset: str, name: str) -> Item | None:
        """Exact (white-space normalised, case-insensitive) name lookup."""
        want = norm_name(name).lower()
        pks = [pk for pk, n in self._name_index(dataset).items() if n.lower() == want]
        found = self.by_pks(pks[:1])
        return found[0] if found else None

    def _title_index(self, dataset: str) -> tuple[dict[int, str], dict[str, set[int]]]:
        """Search keys of the titles (year and leading article removed) and a token -> items index."""
        if dataset not in self._keys:
            keys = {pk: title_key(name) for pk, name in self._name_index(dataset).items()}
            tokens: dict[str, set[int]] = defaultdict(set)
            for pk, key in keys.items():
                for tok in key.split():
                    tokens[tok].add(pk)
            self._keys[dataset] = (keys, dict(tokens))
        return self._keys[dataset]

    def search_title(self, dataset: str, query: str, limit: int = 5, min_score: float = 60.0) -> list[tuple[Item, float]]:
        """Fuzzy title search, best first, scores 0..100.

        An exact title scores 100; a close spelling scores by rapidfuzz's ``QRatio`` (whole-string
        similarity, so a typo matches but an unrelated title sharing one word does not); a title that
        contains every word of the query scores 90 minus a small length penalty. A year in the query
        ("Heat (1995)") prefers that year's item.
        """
        if not query or not query.strip():
            return []
        keys, tokens = self._title_index(dataset)
        q = title_key(query)
        if not q:
            return []
        _, year = split_title(norm_name(query))
        scores: dict[int, float] = {}
        for _, score, pk in process.extract(q, keys, scorer=fuzz.QRatio, processor=None, limit=limit * 4, score_cutoff=min_score):
            scores[pk] = float(score)
        words = q.split()
        if all(w in tokens for w in words):
            for pk in set.intersection(*(tokens[w] for w in words)):
                scores[pk] = max(scores.get(pk, 0.0), max(min_score, 90.0 - 0.5 * (len(keys[pk]) - len(q))))
        names = self._name_index(dataset)
        for pk in scores:
            if keys[pk] == q:
                scores[pk] = 100.0
        ranked = sorted(
            scores,
            key=lambda pk: (scores[pk] + (5.0 if year and split_title(names[pk])[1] == year else 0.0), -len(names[pk])),
            reverse=True,
        )[:limit]
        found = dict(zip(ranked, self.by_pks(ranked), strict=True))
        return [(found[pk], scores[pk]) for pk in ranked if scores[pk] >= min_score]

    def attribute_values(self, dataset: str, key: str) -> list[str]:
        """Distinct values of an attribute (e.g. every genre)."""
        if (dataset, key) not in self._values:
            with self.engine.connect() as conn:
                q = sa.select(attrs_t.c.value).where(attrs_t.c.dataset == dataset, attrs_t.c.key == key).distinct()
                self._values[(dataset, key)] = [r[0] for r in conn.execute(q)]
        return self._values[(dataset, key)]

    def by_attribute(self, dataset: str, key: str, value: str, limit: int = 50, fuzzy: bool = True) -> list[Item]:
        """Items whose attribute ``key`` has ``value`` (fuzzy-matched to a known value unless ``fuzzy=False``)."""
        value_norm = norm_name(value).lower()
        if fuzzy:
            best = process.extractOne(
                value, self.attribute_values(dataset, key), scorer=fuzz.WRatio, processor=utils.default_process, score_cutoff=85
            )
            if best is None:
                return []
            value_norm = best[0].lower()
        with self.engine.connect() as conn:
            q = (
                sa.select(attrs_t.c.item_pk)
                .where(attrs_t.c.dataset == dataset, attrs_t.c.key == key, attrs_t.c.value_norm == value_norm)
                .limit(limit)
            )
            pks = [r[0] for r in conn.execute(q)]
        return self.by_pks(pks)

    def neighbours(self, dataset: str, entity: str) -> list[tuple[str, str, str]]:
        """KG triples with ``entity`` as head or tail."""
        with self.engine.connect() as conn:
            q = sa.select(triples_t.c.head, triples_t.c.relation, triples_t.c.tail).where(
                triples_t.c.dataset == dataset, sa.or_(triples_t.c.head == entity, triples_t.c.tail == entity)
            )
            return [tuple(r) for r in conn.execute(q)]  # type: ignore[misc]

    def all_items(self, dataset: str) -> list[Item]:
        """Every item of a dataset, in primary-key order."""
        with self.engine.connect() as conn:
            return [self._item(r) for r in conn.execute(sa.select(items_t).where(items_t.c.dataset == dataset).order_by(items_t.c.pk))]


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)]


# ---- what the dataset specs build their catalogs from -----------------------------------------


def named_items(spec: DatasetSpec, root: Path) -> CatalogRows:
    """One row per item name (the title's year read from the name), no attributes, no graph."""
    items: list[dict[str, Any]] = []
    for n, name in enumerate(sorted(item_names(spec.name, str(root)))):
        title, year = split_title(name)
        items.append({"item_id": str(n), "name": name, "title": title, "year": year, "plot": None, "attributes": {}})
    return items, []


def items_json(folder: Path, spec: DatasetSpec) -> CatalogRows:
    """llmcrs's own format, for a new dataset: ``items.json``, a list of ``{"name": "Heat (1995)", "year": 1995,
    "plot": ..., "genre": [...], "director": [...], "cast": [...], "writer": [...], "language": [...]}`` (only
    ``name`` is required), and an optional ``triples.json`` of ``[head, relation, tail]``."""
    items = []
    for n, rec in enumerate(read_json(folder / "items.json", spec.name)):
        if not isinstance(rec, dict) or not rec.get("name"):
            raise DataError(f"{folder / 'items.json'}: item {n} has no name")
        name = norm_name(rec["name"])
        title, year = split_title(name)
        attrs = {key: list(dict.fromkeys(norm_name(v) for v in _as_list(rec.get(key)))) for key in LIST_KEYS}
        items.append(
            {
                "item_id": str(rec.get("id", n)),
                "name": name,
                "title": title,
                "year": int(rec["year"]) if str(rec.get("year", "")).isdigit() else year,
                "plot": rec.get("plot") or None,
                "attributes": {k: v for k, v in attrs.items() if v},
            }
        )
    kg = folder / "triples.json"
    triples = [(norm_name(h), str(r), norm_name(t)) for h, r, t in read_json(kg, spec.name)] if kg.is_file() else []
    return items, triples


def items_json_names(folder: Path) -> frozenset[str]:
    """The item names of ``items.json`` (:func:`items_json`)."""
    return frozenset(
        norm_name(rec["name"]) for rec in read_json(folder / "items.json", folder.name) if isinstance(rec, dict) and rec.get("name")
    )


def kg_triples(folder: Path, dataset: str) -> list[tuple[str, str, str]]:
    """The triples of iEvaLM's knowledge graph files (``kg.json``, ``entity2id.json``, ``relation2id.json``)."""
    id2ent = {int(v): norm_name(k) for k, v in read_json(folder / "entity2id.json", dataset).items()}
    id2rel = {int(v): k for k, v in read_json(folder / "relation2id.json", dataset).items()}
    triples = []
    for head, edges in read_json(folder / "kg.json", dataset).items():
        for rel, tail in edges:
            h, r, t = id2ent.get(int(head)), id2rel.get(int(rel)), id2ent.get(int(tail))
            if h and r and t:
                triples.append((h, r, t))
    return list(dict.fromkeys(triples))


#: The files :func:`processed_catalog` reads (a changed one rebuilds the catalog).
PROCESSED_FILES = ("id2info.json", "kg.json", "entity2id.json", "relation2id.json")


def processed_catalog(folder: Path, spec: DatasetSpec) -> CatalogRows:
    """iEvaLM's item metadata (``id2info.json``: name, year, plot, genres, people) and knowledge graph."""
    items: list[dict[str, Any]] = []
    for iid, rec in read_json(folder / "id2info.json", spec.name).items():
        if not rec.get("name"):
            continue
        attrs = {
            key: list(dict.fromkeys(norm_name(v) for src in srcs for v in _as_list(rec.get(src))))
            for key, srcs in ATTRIBUTE_KEYS.items()
            if key in LIST_KEYS
        }
        title, year = split_title(norm_name(rec["name"]))
        if rec.get("year") and str(rec["year"]).isdigit():
            year = int(rec["year"])
        extra = {k: v for k, v in rec.items() if k not in {"name", "plot", "year"} and k not in sum(ATTRIBUTE_KEYS.values(), ())}
        items.append(
            {
                "item_id": str(iid),
                "name": norm_name(rec["name"]),
                "title": title,
                "year": year,
                "plot": rec.get("plot") or None,
                "attributes": {**{k: v for k, v in attrs.items() if v}, **({"raw": extra} if extra else {})},
            }
        )
    return items, kg_triples(folder, spec.name)
