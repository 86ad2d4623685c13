"""Shared fixtures: the real data root (skipped with a reason when absent) and isolated homes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crsdata.paths import DataError, data_root

FIXTURES = Path(__file__).parent / "fixtures"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real CRS data (../shared/data or $LLMCRS_DATA_DIR); skips when absent."""
    try:
        root = data_root()
    except DataError as exc:
        pytest.skip(f"real CRS data absent: {exc}")
    if not (root / "redial").is_dir():
        pytest.skip(f"real CRS data absent: {root} has no redial/")
    return root


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An isolated LLMCRS_HOME for the whole session (catalog, caches)."""
    home = tmp_path_factory.mktemp("llmcrs_home")
    os.environ["LLMCRS_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def catalog(real_root: Path, session_home: Path):
    """The real catalog built once per session into a temporary SQLite file."""
    from crsdata.catalog import Catalog

    cat = Catalog(f"sqlite:///{session_home / 'catalog.sqlite'}", real_root)
    cat.build(["redial", "opendialkg"])
    return cat
