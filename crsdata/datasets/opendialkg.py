"""OpenDialKG (iEvaLM's processed release): movies and books, with their metadata and a knowledge graph."""

from __future__ import annotations

from pathlib import Path

from crsdata.catalog import PROCESSED_FILES, processed_catalog
from crsdata.loaders import from_processed, processed_names
from crsdata.registry import DatasetSpec, Remote, register
from crsdata.schema import Dialogue

IEVALM = "https://raw.githubusercontent.com/RUCAIBox/iEvaLM-CRS/162e2f442fb0799550af587dce0285a2d5ca897f/data"
REMOTE = {
    **{
        f"{s}_data_processed.jsonl": Remote(f"{IEVALM}/opendialkg_eval/{s}_data_processed.jsonl", h)
        for s, h in (
            ("train", "472243b8c12c8e1eb44598d094e8b6e03a148ce13dc3f58ea9b323ba4ed27018"),
            ("valid", "21bbf814ad76f36f058678b1bf4e9a77ca01ca00766bd8eb39780d1163f74bd2"),
            ("test", "055eb9481823517099f0109929ea640662d58287af708e99983d9b97e2ce51a4"),
        )
    },
    "dialog_Books.jsonl": Remote(
        f"{IEVALM}/opendialkg/dialog_Books.jsonl", "e68fb6109ac56ffea10f21bf6350d9e024c7b8ee9abc6a3b2a8e35f31ce3f7f6"
    ),
    "id2info.json": Remote(f"{IEVALM}/opendialkg/id2info.json", "a8ce8de8c957a1d339c80ff548e13eb32a66ee639243f67bc479ce09ad1c299e"),
    "item_ids.json": Remote(f"{IEVALM}/opendialkg/item_ids.json", "c7f7d151066c41a2b70d3df9b414e1d3c67ac48e978e222a90319e1dbfa7e98f"),
    "entity2id.json": Remote(f"{IEVALM}/opendialkg/entity2id.json", "394e2e101463052c6b41f14d87b1420f936528c6f81ed50c22388c51fcda4e81"),
    "kg.json": Remote(f"{IEVALM}/opendialkg/kg.json", "7bb2ab8d4ba6906d2f1a15b26c7a74ddc9d4cc1ddeb02cfa29ec2f5977fecb4d"),
    "relation2id.json": Remote(f"{IEVALM}/opendialkg/relation2id.json", "0722a517e68359d28182b897282fdefd9ceced47da315ad934f8f298a41a76e1"),
}


def load(folder: Path, split: str) -> list[Dialogue]:
    """The source's own train/valid/test processed files."""
    return from_processed("opendialkg", split, folder / f"{split}_data_processed.jsonl", processed_names(folder))


SPEC = register(
    DatasetSpec(
        name="opendialkg",
        load=load,
        item_names=processed_names,
        catalog=processed_catalog,
        files=PROCESSED_FILES,
        remote=REMOTE,
        category="movie",
        domain="movies and books",
        splits="the source's train/valid/test processed files",
        benchmark=True,
    )
)
