"""File reading with errors that name the file, the line and the fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crsdata.paths import DataError


def require(path: Path, dataset: str) -> Path:
    """Return ``path`` if it exists, else raise a :class:`DataError` naming the fetch command."""
    if not path.is_file():
        raise DataError(
            f"{dataset}: missing data file {path}. Fetch it with "
            f"`python -m crsdata download {dataset} --dest {path.parent.parent}` "
            "(needs internet), or point LLMCRS_DATA_DIR at a copy."
        )
    return path


def read_json(path: Path, dataset: str) -> Any:
    """Load a JSON file, raising :class:`DataError` with the position of a syntax error."""
    require(path, dataset)
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from exc


def read_jsonl(path: Path, dataset: str, required: tuple[str, ...] = ()) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, record)`` for each non-blank line of a JSONL file.

    Args:
        path: The file.
        dataset: Dataset name, for the error message.
        required: Keys every (dict) record must have.

    Raises:
        DataError: Malformed JSON or a missing key, naming the file and line.
    """
    require(path, dataset)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from exc
            if required:
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
                missing = [k for k in required if k not in record]
                if missing:
                    raise DataError(f"{path}:{lineno}: record lacks {', '.join(missing)}")
            yield lineno, record
