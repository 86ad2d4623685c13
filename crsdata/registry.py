"""One entry per dataset: a :class:`DatasetSpec` in one registry.

A dataset is one module in ``crsdata/datasets/`` that calls :func:`register` once: where its files
are and where they come from, how its splits are made, what its items are called, what its catalog
and knowledge graph hold, and what it recommends. The loaders, the catalog, the downloads, the
experts' environment, the chat page and the benchmarks read the spec, never a dataset's name
(``tests/test_registry.py`` registers a fixture dataset in one call and runs all of them on it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.paths import DataError
from crsdata.schema import SPLITS, Dialogue

#: What a catalog builder returns: item rows (``item_id``, ``name``, ``title``, ``year``, ``plot``,
#: ``attributes``) and knowledge-graph triples ``(head, relation, tail)``.
CatalogRows = tuple[list[dict[str, Any]], list[tuple[str, str, str]]]


@dataclass(frozen=True)
class Remote:
    """One downloadable file: where it comes from and what it must hash to."""

    url: str
    sha256: str
    unzip: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the code knows about one dataset.

    Attributes:
        name: The key every command takes (``--dataset``).
        load: ``load(folder, split)`` -> the split's dialogues; ``folder`` is the dataset's folder under
            the data root. How the splits are made is the loader's (and ``splits``' words).
        item_names: ``item_names(folder)`` -> the normalised names of the items. ``None``: every item a
            dialogue of any split names.
        catalog: ``catalog(folder, spec)`` -> the catalog's rows and the knowledge graph's triples.
            ``None``: one row per item name, no attributes, no graph.
        files: The files the catalog is built from; their bytes fingerprint a build (a changed file
            rebuilds it).
        folder: The folder under the data root (defaults to ``name``; OpenDialKG's books share
            ``opendialkg``).
        remote: File name -> :class:`Remote` (``python -m crsdata download``).
        category: What one item is (``movie``, ``book``): the experts' and prompts' word.
        domain: What the chat page says the system recommends (``movies``, ``books``).
        splits: How the splits are made, in words (``python -m crsdata stats`` shows it).
        benchmark: Whether ``python -m tools.bench`` measures it by default.
    """

    name: str
    load: Callable[[Path, str], list[Dialogue]]
    item_names: Callable[[Path], frozenset[str]] | None = None
    catalog: Callable[[Path, DatasetSpec], CatalogRows] | None = None
    files: tuple[str, ...] = ()
    folder: str = ""
    remote: Mapping[str, Remote] = field(default_factory=dict)
    category: str = "movie"
    domain: str = "movies"
    splits: str = ""
    benchmark: bool = False

    @property
    def directory(self) -> str:
        """The folder under the data root."""
        return self.folder or self.name

    def path(self, root: Path) -> Path:
        """The dataset's folder under ``root``."""
        return root / self.directory

    def names(self, root: Path) -> frozenset[str]:
        """The items' normalised names."""
        folder = self.path(root)
        if self.item_names is not None:
            return self.item_names(folder)
        return frozenset(item for split in SPLITS for dlg in self.load(folder, split) for turn in dlg.turns for item in turn.items)


_REGISTRY: dict[str, DatasetSpec] = {}
_BUILT_IN = "crsdata.datasets"


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a dataset; returns the spec, so a module can write ``SPEC = register(...)``."""
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset (tests that registered a fixture)."""
    _REGISTRY.pop(name, None)


def datasets() -> dict[str, DatasetSpec]:
    """Every registered dataset, the built-in ones first (``crsdata/datasets/`` is imported on first use)."""
    importlib.import_module(_BUILT_IN)
    return dict(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``.

    Raises:
        DataError: Unknown dataset, naming the known ones.
    """
    known = datasets()
    if name not in known:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(known)}")
    return known[name]
