"""The tables in docs/results are written by the commands (crsdata.publish) and rendered from their JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsdata.publish import DOCS_RESULTS, publish, render

PAGES = sorted(DOCS_RESULTS.glob("*.json"))


def test_publish_records_each_run_under_its_key_and_renders_the_page(tmp_path):
    page = publish("paper", "redial", "# Tables\n| a | b |\n|---|---|\n| 1 | 2 |", "python -m eval paper", folder=tmp_path)
    publish("paper", "opendialkg", "# Tables\n| a |\n|---|\n| 3 |", "python -m eval paper --dataset opendialkg", folder=tmp_path)
    publish("paper", "redial", "# Tables\n| a | b |\n|---|---|\n| 5 | 6 |", "python -m eval paper", data={"hit": 5}, folder=tmp_path)
    entries = json.loads((tmp_path / "paper.json").read_text())
    assert sorted(entries) == ["opendialkg", "redial"] and entries["redial"]["data"] == {"hit": 5}
    text = page.read_text()
    assert text == render("paper", entries)
    assert "| 5 | 6 |" in text and "| 1 | 2 |" not in text  # a rerun replaces its entry
    assert text.index("## opendialkg") < text.index("## redial") and "### Tables" in text  # one section per key, headings below it
    assert "`python -m eval paper --dataset opendialkg` (code " in text


@pytest.mark.parametrize("store", PAGES, ids=[p.stem for p in PAGES])
def test_every_committed_page_is_its_json_rendered(store: Path):
    """Nobody edited a page by hand: each docs/results/<name>.md is exactly what its JSON renders to."""
    assert store.with_suffix(".md").read_text(encoding="utf-8") == render(store.stem, json.loads(store.read_text(encoding="utf-8")))


def test_the_docs_hold_the_pages_the_commands_write():
    assert {p.stem for p in PAGES} >= {"experts", "paper", "simulate"}


def test_a_command_publishes_its_tables(tmp_path, monkeypatch):
    """tools.bench on a registered fixture dataset writes its table into the publish folder."""
    from crsdata import DatasetSpec, register
    from crsdata.catalog import items_json, items_json_names
    from crsdata.loaders import jsonl_splits
    from crsdata.registry import unregister
    from tools.bench import main as bench

    root = Path(__file__).parent / "fixtures" / "crs"
    monkeypatch.setenv("LLMCRS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMCRS_CATALOG_URL", f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    monkeypatch.setenv("LLMCRS_PUBLISH_DIR", str(tmp_path / "docs"))
    register(DatasetSpec("tinyfilms", load=jsonl_splits("tinyfilms"), item_names=items_json_names, catalog=items_json))
    try:
        assert bench(["--datasets", "tinyfilms", "--data_root", str(root), "--out", str(tmp_path / "experts.json")]) == 0
    finally:
        unregister("tinyfilms")
        from tools.env import expert_env

        expert_env.cache_clear()
    page = (tmp_path / "docs" / "experts.md").read_text()
    assert "## tinyfilms" in page and "| popularity | " in page and "python -m tools.bench --datasets tinyfilms" in page
    assert json.loads((tmp_path / "docs" / "experts.json").read_text())["tinyfilms"]["data"]["tinyfilms/popularity"]["hit@10"] >= 0
