"""CRSLab's preprocessed GoRecDial and TG-ReDial (used when their folders are present)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from crsdata.catalog import named_items
from crsdata.io import read_json
from crsdata.loaders import SEEKER_ROLES, from_turn_lists, norm_name
from crsdata.paths import DataError
from crsdata.registry import CatalogRows, DatasetSpec, Remote, register
from crsdata.schema import Dialogue


def loader(dataset: str, conv_key: str, items_key: str) -> Callable[[Path, str], list[Dialogue]]:
    """CRSLab's ``{split}_data.json`` (GoRecDial: ``dialog``/``movies``; TG-ReDial: ``messages``/``movie``)."""

    def load(folder: Path, split: str) -> list[Dialogue]:
        path = folder / f"{split}_data.json"
        data = read_json(path, dataset)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of conversations")
        convs = []
        for n, conv in enumerate(data):
            if not isinstance(conv, dict) or conv_key not in conv:
                raise DataError(f"{path}: conversation {n} lacks '{conv_key}'")
            convs.append((str(conv.get("conv_id", n)), conv[conv_key]))
        return from_turn_lists(dataset, split, convs, SEEKER_ROLES, ("role", "text", items_key, "entity"), path)

    return load


def item_names(folder: Path) -> frozenset[str]:
    """The entities CRSLab lists as movies (``movie_ids.json`` over ``entity2id.json``)."""
    ent2id = read_json(folder / "entity2id.json", folder.name)
    id2ent = {v: k for k, v in ent2id.items()}
    return frozenset(norm_name(id2ent[i]) for i in read_json(folder / "movie_ids.json", folder.name) if i in id2ent)


def catalog_with(kg_file: str) -> Callable[[Path, DatasetSpec], CatalogRows]:
    """One row per movie and the triples of CRSLab's tab-separated knowledge graph, when present."""

    def catalog(folder: Path, spec: DatasetSpec) -> CatalogRows:
        items, _ = named_items(spec, folder.parent)
        triples = []
        if (folder / kg_file).exists():
            for line in (folder / kg_file).read_text(encoding="utf-8").splitlines():
                parts = line.split("\t")
                if len(parts) == 3:
                    triples.append((norm_name(parts[0]), parts[1], norm_name(parts[2])))
        return items, triples

    return catalog


def crslab_spec(name: str, conv_key: str, items_key: str, kg_file: str, archive: str, url: str, sha256: str) -> DatasetSpec:
    """One CRSLab release: its loader, movie list, knowledge graph file and zipped download."""
    return DatasetSpec(
        name=name,
        load=loader(name, conv_key, items_key),
        item_names=item_names,
        catalog=catalog_with(kg_file),
        files=("entity2id.json", "movie_ids.json"),
        remote={archive: Remote(url, sha256, unzip=True)},
        splits="CRSLab's {train,valid,test}_data.json",
    )


# Cloud drive links and sha256 from CRSLab's resources.py.
GORECDIAL = register(
    crslab_spec(
        "gorecdial", "dialog", "movies", "dbpedia_subkg.txt", "gorecdial.zip",
        "https://pkueducn-my.sharepoint.com/:u:/g/personal/franciszhou_pku_edu_cn/EYmobnFBox1LnGKGW4TMCk8BW6rnjdAZNVsNo8uJ8ZsJLg?download=1",
        "66035bf24862535a072cc6778a3affd541ae0a4aa1fe31455d4fb063b301f087",
    )
)  # fmt: skip
TGREDIAL = register(
    crslab_spec(
        "tgredial", "messages", "movie", "cn-dbpedia.txt", "tgredial_pkuseg.zip",
        "https://pkueducn-my.sharepoint.com/:u:/g/personal/franciszhou_pkueducn_onmicrosoft_com/Ee7FleGfEStCimV4XRKvo-kBR8ABdPKo0g_XqgLJPxP6tg?download=1",
        "8b7e23205778db4baa012eeb129cf8d26f4871ae98cdfe81fde6adc27a73a8d6",
    )
)  # fmt: skip
