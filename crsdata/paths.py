"""Where the data lives.

The data root is resolved in this order: an explicit argument, the
``LLMCRS_DATA_DIR`` environment variable, then ``../shared/data`` next to the
repository (or next to the working directory). The data is never copied into
the repository.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

ENV_DATA_DIR = "LLMCRS_DATA_DIR"
ENV_HOME = "LLMCRS_HOME"
REPO_ROOT = Path(__file__).resolve().parents[1]


class SetupError(RuntimeError):
    """Something the user has to make or fix (data, a trained model, a checkpoint, an option); the message
    names it and the command that makes it. CLIs print it on one line and exit 2 (:func:`run_cli`)."""


class DataError(SetupError):
    """A data file is missing or malformed. The message says which and what to do."""


def run_cli(main: Callable[[], int | None]) -> int:
    """Run a CLI's ``main``: a :class:`SetupError` becomes one ``error:`` line and exit code 2, not a traceback."""
    try:
        return main() or 0
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def default_data_roots() -> list[Path]:
    """Candidate data roots, most specific first."""
    roots = []
    if os.environ.get(ENV_DATA_DIR):
        roots.append(Path(os.environ[ENV_DATA_DIR]).expanduser())
    roots += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return roots


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root directory.

    Args:
        root: An explicit directory; wins over the environment and defaults.

    Raises:
        DataError: No candidate directory exists.
    """
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataError(f"data root {path} does not exist")
        return path
    for cand in default_data_roots():
        if cand.is_dir():
            return cand
    tried = ", ".join(str(p) for p in default_data_roots())
    raise DataError(
        f"no CRS data found (tried {tried}). Set {ENV_DATA_DIR} to a directory holding "
        "redial/, opendialkg/, inspired/ ..., or fetch one with `python -m crsdata download redial --dest DIR`."
    )


def home_dir() -> Path:
    """Directory for built artefacts (catalog DB, model caches, checkpoints).

    ``LLMCRS_HOME`` if set, else ``var/`` inside the repository (git-ignored).
    """
    path = Path(os.environ.get(ENV_HOME, REPO_ROOT / "var")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
