"""ReDial (iEvaLM's processed release): movies, with their metadata and a knowledge graph."""

from __future__ import annotations

from pathlib import Path

from crsdata.catalog import PROCESSED_FILES, processed_catalog
from crsdata.io import read_jsonl
from crsdata.loaders import PROCESSED_KEYS, from_processed, processed_names, seeded_split
from crsdata.registry import DatasetSpec, Remote, register
from crsdata.schema import Dialogue

IEVALM = "https://raw.githubusercontent.com/RUCAIBox/iEvaLM-CRS/162e2f442fb0799550af587dce0285a2d5ca897f/data"


def load(folder: Path, split: str) -> list[Dialogue]:
    """Train/valid: 90%/10% of ``valid_data_processed``; test: ``test_data_processed``."""
    names = processed_names(folder)
    if split == "test":
        return from_processed("redial", split, folder / "test_data_processed.jsonl", names)
    path = folder / "valid_data_processed.jsonl"
    ids = [str(r["dialog_id"]) for _, r in read_jsonl(path, "redial", PROCESSED_KEYS)]
    train, valid = seeded_split(ids, (0.9, 0.1))
    return from_processed("redial", split, path, names, train if split == "train" else valid)


SPEC = register(
    DatasetSpec(
        name="redial",
        load=load,
        item_names=processed_names,
        catalog=processed_catalog,
        files=PROCESSED_FILES,
        remote={
            "valid_data.jsonl": Remote(
                f"{IEVALM}/redial/valid_data.jsonl", "69b7cf81d0671c3dd0a1167df2e7e1e51ca76b3edce97022343d68f6974510a1"
            ),
            "valid_data_processed.jsonl": Remote(
                f"{IEVALM}/redial_eval/valid_data_processed.jsonl", "20f0672f83c2be2f1f6c43867ba0ab1c2c483ca221a360ddc58679294afa472f"
            ),
            "test_data_processed.jsonl": Remote(
                f"{IEVALM}/redial_eval/test_data_processed.jsonl", "8c8855aa872ade097691bb9feaeed6aaf4cfafa21575ebfcd8271b1e263f352b"
            ),
            "id2info.json": Remote(f"{IEVALM}/redial/id2info.json", "7bdfe9a9c7f1b4d59aa9a5aeba0029071fd5a7232b61c8257212a335ffe424f7"),
            "item_ids.json": Remote(f"{IEVALM}/redial/item_ids.json", "73d1676353fff02ba6cb2cab093b2977579666a152621f1248d07791d7a3b0a6"),
            "entity2id.json": Remote(f"{IEVALM}/redial/entity2id.json", "d530bd465e7a0edb19257d444d9665fda8271ec4d5aff235a417cad13848c52f"),
            "entity2type.json": Remote(
                f"{IEVALM}/redial/entity2type.json", "e75311e2e1eb3b3560302268c964cb44aaf1467e6a4d186baf2267ad20ea984b"
            ),
            "kg.json": Remote(f"{IEVALM}/redial/kg.json", "e3698d042926defb656b25873d4144d255aa914a575fcafa8af14cf434c867ff"),
            "relation2id.json": Remote(
                f"{IEVALM}/redial/relation2id.json", "028b39258502a41d81e7176f7d9f77b1b342c6a9dc42b5cf214309e590522027"
            ),
        },
        category="movie",
        domain="movies",
        splits="train/valid: 90%/10% of iEvaLM's valid_data_processed dialogues (the ReDial training file is not "
        "available offline); test: test_data_processed (the official test set)",
        benchmark=True,
    )
)
