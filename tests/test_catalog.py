"""The item catalog on the real metadata and on a fixture dataset."""

from __future__ import annotations

import shutil

import sqlalchemy as sa

from crsdata.catalog import Catalog, items_t, split_title
from tests.conftest import FIXTURES


def test_fuzzy_title_lookup(catalog):
    hits = catalog.search_title("redial", "the shining", limit=3)
    assert hits[0][0].name == "The Shining (1980)"
    assert hits[0][1] == 100.0
    assert catalog.search_title("redial", "babadok")[0][0].name == "The Babadook (2014)"  # typo
    assert catalog.search_title("redial", "   ") == []


def test_item_fields(catalog):
    item = catalog.get("redial", "the shining  (1980)")
    assert item is not None
    assert item.title == "The Shining" and item.year == 1980
    assert "Stanley Kubrick" in item.get("director")
    assert "horror" in item.get("genre")
    assert "Jack Nicholson" in item.get("cast")
    assert item.plot and "hotel" in item.plot
    assert catalog.get("redial", "No Such Movie (1901)") is None


def test_attribute_lookup(catalog):
    kubrick = {i.name for i in catalog.by_attribute("redial", "director", "Stanley Kubrik")}  # fuzzy
    assert {"The Shining (1980)", "A Clockwork Orange (1971)"} <= kubrick
    assert catalog.by_attribute("redial", "director", "zzzz qqqq") == []
    odkg = catalog.by_attribute("opendialkg", "cast", "Dev Patel")
    assert "Slumdog Millionaire" in {i.name for i in odkg}


def test_kg_neighbours(catalog):
    triples = catalog.neighbours("redial", "Stanley Kubrick")
    assert ("The Shining (1980)", "director", "Stanley Kubrick") in triples


def test_build_is_idempotent_and_rebuilds_on_change(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES / "crs", root)
    cat = Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", root)
    assert cat.build(["gorecdial"]) == {"gorecdial": 4}
    with cat.engine.connect() as conn:
        pks = sorted(r[0] for r in conn.execute(sa.select(items_t.c.pk)))
    assert cat.build(["gorecdial"]) == {"gorecdial": 4}
    with cat.engine.connect() as conn:
        assert sorted(r[0] for r in conn.execute(sa.select(items_t.c.pk))) == pks  # nothing rewritten
    (root / "gorecdial" / "movie_ids.json").write_text("[0, 1, 2]")
    assert cat.build(["gorecdial"]) == {"gorecdial": 3}
    assert cat.neighbours("gorecdial", "Christopher Nolan") == [("Interstellar", "director", "Christopher Nolan")]


def test_split_title():
    assert split_title("Heat (1995)") == ("Heat", 1995)
    assert split_title("Us") == ("Us", None)
