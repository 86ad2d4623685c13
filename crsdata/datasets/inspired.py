"""INSPIRED (UniCRS's release): movie dialogues, no item metadata."""

from __future__ import annotations

from pathlib import Path

from crsdata.io import read_jsonl
from crsdata.loaders import from_turn_lists, norm_name, role_map, seeded_split
from crsdata.registry import DatasetSpec, Remote, register
from crsdata.schema import Dialogue

UNICRS = "https://raw.githubusercontent.com/wxl1999/UniCRS/f7d8f95104d6eba5371cfa845b243057a632079e/data"
ROLES = role_map({"seeker": "user", "recommender": "recommender"})
FIELDS = ("role", "text", "movie", "entity_name")


def load(folder: Path, split: str) -> list[Dialogue]:
    """Train/valid: 80%/20% of ``dev.jsonl``, seeded; test: ``test.jsonl``."""
    if split == "test":
        path = folder / "test.jsonl"
        convs = [(f"test-{n}", c) for n, c in read_jsonl(path, "inspired")]
        return from_turn_lists("inspired", split, convs, ROLES, FIELDS, path)
    path = folder / "dev.jsonl"
    convs = [(f"dev-{n}", c) for n, c in read_jsonl(path, "inspired")]
    train, valid = seeded_split([c[0] for c in convs], (0.8, 0.2))
    keep = train if split == "train" else valid
    return from_turn_lists("inspired", split, [c for c in convs if c[0] in keep], ROLES, FIELDS, path)


def item_names(folder: Path) -> frozenset[str]:
    """Every movie a dialogue of ``dev.jsonl`` or ``test.jsonl`` names."""
    names: set[str] = set()
    for fname in ("dev.jsonl", "test.jsonl"):
        for _, conv in read_jsonl(folder / fname, "inspired"):
            names.update(norm_name(x) for u in conv for x in u.get("movie", []))
    return frozenset(names)


SPEC = register(
    DatasetSpec(
        name="inspired",
        load=load,
        item_names=item_names,
        files=("dev.jsonl", "test.jsonl"),
        remote={
            "dev.jsonl": Remote(f"{UNICRS}/inspired/dev.jsonl", "75feafb0d35a9203644ba992cc98180b878c16ec210d1d29b2d5d1698a137fd7"),
            "test.jsonl": Remote(f"{UNICRS}/inspired/test.jsonl", "01d000af899e78db2329eadc48ebecb683f1b37b0a35e7230d324a62576481e5"),
            "relation_set.json": Remote(
                f"{UNICRS}/inspired/relation_set.json", "95173c74601bc770963e90d5812fc9aac6e8cbe8179a8a84a823f1bea99b34c8"
            ),
        },
        category="movie",
        domain="movies",
        splits="train/valid: 80%/20% of dev.jsonl, seeded; test: test.jsonl",
        benchmark=True,
    )
)
