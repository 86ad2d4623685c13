"""A dataset is one entry: register a fixture dataset in one call, and the loaders, the catalog, the experts,
the chat page's domain and ``eval run`` all work on it (no other file names it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from crsdata import DataError, DatasetSpec, available_datasets, dataset_spec, datasets, load_dialogues, load_samples, register
from crsdata.catalog import Catalog, items_json, items_json_names
from crsdata.loaders import jsonl_splits
from crsdata.registry import unregister

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "crs"


@pytest.fixture
def tinyfilms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatasetSpec]:
    """The fixture dataset, registered in one call (and removed after the test), with a private home."""
    monkeypatch.setenv("LLMCRS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMCRS_CATALOG_URL", f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    spec = register(
        DatasetSpec(
            "tinyfilms",
            load=jsonl_splits("tinyfilms"),
            item_names=items_json_names,
            catalog=items_json,
            files=("items.json",),
            category="movie",
            domain="films",
        )  # fmt: skip
    )
    yield spec
    unregister("tinyfilms")
    from tools.env import expert_env

    expert_env.cache_clear()


def test_built_in_datasets_are_registered_in_order():
    assert list(datasets())[:4] == ["redial", "opendialkg", "opendialkg_books", "inspired"]
    assert dataset_spec("opendialkg_books").path(Path("/d")) == Path("/d/opendialkg")
    assert dataset_spec("opendialkg_books").category == "book" and dataset_spec("redial").remote
    with pytest.raises(DataError, match="unknown dataset 'nope'; known: redial, opendialkg"):
        dataset_spec("nope")


def test_loaders_and_catalog_read_a_registered_dataset(tinyfilms):
    assert "tinyfilms" in available_datasets(FIXTURE_ROOT)
    train = load_dialogues("tinyfilms", "train", FIXTURE_ROOT)
    assert len(train) == 6 and train[0].turns[0].role == "user" and train[0].turns[1].role == "recommender"
    samples = load_samples("tinyfilms", "test", FIXTURE_ROOT)
    assert [s.targets for s in samples] == [("Get Out (2017)",), ("The Terminator (1984)",), ("Superbad (2007)",), ("Heat (1995)",)]
    assert samples[2].context_items == ("Aliens (1986)", "The Terminator (1984)")

    catalog = Catalog(root=FIXTURE_ROOT)
    assert catalog.build(["tinyfilms"]) == {"tinyfilms": 12}
    heat = catalog.get("tinyfilms", "Heat (1995)")
    assert heat is not None and heat.year == 1995 and heat.get("director") == ["Michael Mann"]
    assert {i.name for i in catalog.by_attribute("tinyfilms", "cast", "Sigourney Weaver")} == {"Alien (1979)", "Aliens (1986)"}
    assert catalog.search_title("tinyfilms", "the shining")[0][0].name == "The Shining (1980)"


def test_experts_and_the_page_domain_read_the_spec(tinyfilms):
    from starlette.testclient import TestClient

    from agent.webapp import create_app
    from tools import default_experts
    from tools.env import expert_env

    env = expert_env("tinyfilms", str(FIXTURE_ROOT))
    assert env.category == "movie" and env.popularity["Groundhog Day (1993)"] == 2
    tools = {t.name: t for t in default_experts("tinyfilms", str(FIXTURE_ROOT), learned=False)}
    out = tools["popularity_recommender"].invoke(
        {"category": "movie", "dialogue_context": "User: Any horror movies from the 80s?", "top_k": 3}
    )
    assert out["items"][0] == "The Shining (1980)"  # the genre and the decade asked, from the fixture's catalog
    detail = tools["catalog_search"].invoke({"item_name": "Inception", "item_attribute": "director"})
    assert "Christopher Nolan" in json.dumps(detail)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCRS_DATASET", "tinyfilms")
        info = TestClient(create_app()).get("/llmcrs/info").json()
    assert info["domain"] == "films"


def test_eval_run_on_a_registered_dataset(tinyfilms, tmp_path):
    from eval.__main__ import main as eval_main

    args = ["run", "--dataset", "tinyfilms", "--data_root", str(FIXTURE_ROOT), "--results_dir", str(tmp_path / "results"),
            "--systems", "expert:popularity_recommender"]  # fmt: skip
    assert eval_main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "results" / "tinyfilms" / "test" / "expert__popularity_recommender.jsonl").open()]
    assert [r["targets"] for r in rows] == [["Get Out (2017)"], ["The Terminator (1984)"], ["Superbad (2007)"], ["Heat (1995)"]]
    assert rows[0]["ranked"][0] in {"Get Out (2017)", "Alien (1979)", "The Shining (1980)"}  # "a horror movie"
    assert "| expert:popularity_recommender |" in (tmp_path / "results" / "tinyfilms" / "test" / "tables.md").read_text()


@pytest.mark.e2e
def test_the_graph_answers_on_a_registered_dataset(tinyfilms, embedded, tmp_path):
    """The whole graph (the rule manager: the embedded model has no head for a new dataset) on the fixture."""
    from agent.config import GraphConfig
    from agent.graph import build_crs_graph

    graph = build_crs_graph(model=embedded, config=GraphConfig(dataset="tinyfilms", data_root=str(FIXTURE_ROOT), manager="rule"))
    out = graph.invoke({"messages": [("user", "Any horror movies from the 80s?")]})
    assert out["subtask"]["name"] == "recommendation"
    assert "The Shining (1980)" in out["messages"][-1].content
