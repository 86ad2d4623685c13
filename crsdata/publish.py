"""The measured tables in ``docs/results/``, written by the commands that compute them, never by hand.

A command that finishes a full run (``tools.bench``, ``eval manager``, ``eval paper``, ``eval simulate``,
``eval wishes``) calls :func:`publish`: its tables go into ``docs/results/<name>.json`` under a key (the
dataset, say) with the command line, the code's commit and the date, and ``docs/results/<name>.md`` is
rewritten from that JSON by :func:`render`. The Markdown is a function of the JSON
(``tests/test_publish.py`` checks every committed pair), so a figure in the docs is always one that a
command wrote. History and rationale live in ``docs/design.md``.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from crsdata.paths import REPO_ROOT

DOCS_RESULTS = REPO_ROOT / "docs" / "results"
#: Publish elsewhere (the test suite points it at a temporary folder, so tests never touch the docs).
ENV_PUBLISH_DIR = "LLMCRS_PUBLISH_DIR"
#: The page title of each published command (a command not listed gets its name).
TITLES = {
    "experts": "Recommendation experts alone (`python -m tools.bench`)",
    "manager": "The trained manager's decisions (`python -m eval manager`)",
    "paper": "The paper's tables through the graph (`python -m eval paper`)",
    "simulate": "Simulated users (`python -m eval simulate`)",
    "wishes": "Requests generated from the catalog (`python -m eval wishes`)",
}


#: The ``--publish`` flag's help, shared by the commands.
PUBLISH_HELP = "write docs/results/<page>.md and .json (default: unless the run is a smoke run, --limit)"


def code_version() -> str:
    """The repository's commit (``git describe --always --dirty``), or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def command_line(module: str, argv: list[str] | None) -> str:
    """``python -m <module> <args>`` as the command was run."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", "-m", module, *map(shlex.quote, args)])


def shift_headings(markdown: str, by: int = 2) -> str:
    """A command's headings ``by`` levels down, below the page's heading of its entry.

    >>> shift_headings("# Tables\\n## Ablations\\ntext | # not a heading")
    '### Tables\\n#### Ablations\\ntext | # not a heading'
    """
    return "\n".join("#" * by + line if line.startswith("#") else line for line in markdown.splitlines())


def render(name: str, entries: dict[str, dict[str, Any]]) -> str:
    """The Markdown page of one command's published entries (sorted by key)."""
    lines = [
        f"# {TITLES.get(name, name)}",
        "",
        f"Written by the commands below into `{name}.json` and rendered from it (`crsdata.publish`); do not edit:",
        "rerun the command. Measured on the machine the command ran on; history and rationale: `docs/design.md`.",
    ]
    for key in sorted(entries):
        entry = entries[key]
        lines += [
            "",
            f"## {key}",
            "",
            f"`{entry['command']}` (code {entry['code']}, {entry['date']})",
            "",
            shift_headings(entry["markdown"].strip()),
        ]
    return "\n".join(lines) + "\n"


def publish(name: str, key: str, markdown: str, command: str, data: Any = None, folder: Path | None = None) -> Path:
    """Record one run's tables under ``key`` in ``<folder>/<name>.json`` and rewrite ``<folder>/<name>.md``.

    Args:
        name: The command's page (``paper``, ``experts``, ...).
        key: What the run covers (a dataset, ``redial/heldout``); a rerun replaces its entry.
        markdown: The run's tables.
        command: The command line that produced them.
        data: The run's figures as JSON, kept beside the tables.
        folder: Where the pages live (default ``$LLMCRS_PUBLISH_DIR``, else ``docs/results``).

    Returns:
        The Markdown page.
    """
    folder = folder or Path(os.environ.get(ENV_PUBLISH_DIR) or DOCS_RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / f"{name}.json"
    entries = json.loads(store.read_text(encoding="utf-8")) if store.is_file() else {}
    entries[key] = {"command": command, "code": code_version(), "date": datetime.date.today().isoformat(), "markdown": markdown}
    if data is not None:
        entries[key]["data"] = data
    store.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    page = folder / f"{name}.md"
    page.write_text(render(name, entries), encoding="utf-8")
    print(f"published: {page}", file=sys.stderr)
    return page
