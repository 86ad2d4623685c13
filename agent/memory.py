"""Where conversations are kept: the one place that opens a checkpointer for the CLI and benchmarks.

``open_checkpointer(where)`` takes a SQLite file path (the embedded default) or a ``postgresql://`` URL
(LangGraph's ``PostgresSaver``, for sessions shared by several processes or machines; ``pip install -e
'.[postgres]'``). ``where`` defaults to ``$LLMCRS_CHECKPOINTER``, else ``$LLMCRS_HOME/chat.sqlite``.

Every step of a turn (input, detect, match, execute, respond) writes a checkpoint holding the whole
state, so a thread would store each turn about seven times. :class:`TurnSaver` is LangGraph's
``SqliteSaver`` that prunes, when a new turn starts, the intermediate checkpoints of the turns before
it: each turn keeps its input checkpoint (the state as the turn before ended, plus the new message;
the message windows of these checkpoints hold the whole transcript), the current turn keeps all of its steps (a crash
mid-turn still resumes from the last step). Storage per turn is then one state, flat in the length
of the thread. We write this ourselves because ``SqliteSaver`` leaves ``prune`` unimplemented and has
no policy between "keep everything" and "keep the latest".
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.sqlite import SqliteSaver

# The loop checkpoints among the ancestors of a new input checkpoint, back to the input checkpoint
# before it: the intermediate steps of the turn that just ended. Following parents (not "older than")
# leaves other branches of a forked thread alone. An input checkpoint holds the state as the turn before
# it ended, with the new user message among its writes, so keeping input checkpoints keeps every
# finished turn and every message.
_STALE = """
    WITH RECURSIVE chain(id) AS (
        SELECT parent_checkpoint_id FROM checkpoints WHERE thread_id = ?1 AND checkpoint_ns = '' AND checkpoint_id = ?2
        UNION
        SELECT c.parent_checkpoint_id FROM checkpoints c JOIN chain ON c.checkpoint_id = chain.id
        WHERE c.thread_id = ?1 AND c.checkpoint_ns = '' AND json_extract(CAST(c.metadata AS TEXT), '$.source') != 'input'
    )
    SELECT checkpoint_id FROM checkpoints
    WHERE thread_id = ?1 AND checkpoint_ns = '' AND checkpoint_id IN (SELECT id FROM chain)
      AND json_extract(CAST(metadata AS TEXT), '$.source') != 'input'
"""


class TurnSaver(SqliteSaver):
    """``SqliteSaver`` keeping one checkpoint per finished turn (see the module docstring)."""

    def put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        saved = super().put(config, checkpoint, metadata, new_versions)
        if metadata.get("source") == "input" and not config["configurable"].get("checkpoint_ns"):
            self._prune_before(str(config["configurable"]["thread_id"]), checkpoint["id"])
        return saved

    def _prune_before(self, thread: str, input_id: str) -> None:
        with self.cursor() as cur:
            stale = [row[0] for row in cur.execute(_STALE, (thread, input_id)).fetchall()]
            for i in range(0, len(stale), 500):
                chunk = stale[i : i + 500]
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    f"DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id IN ({marks})", (thread, *chunk)
                )
                cur.execute(
                    f"DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id IN ({marks})", (thread, *chunk)
                )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_turns") -> None:
        """Prune the threads' checkpoints.

        Args:
            thread_ids: The threads to prune.
            strategy: ``keep_turns`` (each turn's input checkpoint and every step of the current turn;
                what :meth:`put` does as each turn starts) or ``delete`` (everything; ``delete_thread``).
        """
        if strategy not in ("keep_turns", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}; use 'keep_turns' or 'delete'")
        for thread in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread)
                continue
            inputs = self.conn.execute(
                "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
                "AND json_extract(CAST(metadata AS TEXT), '$.source') = 'input'", (thread,)
            ).fetchall()  # fmt: skip
            for (input_id,) in inputs:
                self._prune_before(thread, input_id)


def default_checkpointer() -> str:
    """``$LLMCRS_CHECKPOINTER`` (a path or a ``postgresql://`` URL), else ``$LLMCRS_HOME/chat.sqlite``."""
    from crsdata.paths import home_dir

    return os.environ.get("LLMCRS_CHECKPOINTER") or str(home_dir() / "chat.sqlite")


def redact(where: str | Path) -> str:
    """``where`` without a password (``postgresql://user:secret@host/db`` -> ``postgresql://user@host/db``).

    >>> redact("postgresql://me:secret@db:5432/crs")
    'postgresql://me@db:5432/crs'
    """
    text = str(where)
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1@", text) if is_postgres(text) else text


def is_postgres(where: str | Path) -> bool:
    """Whether ``where`` names a PostgreSQL database rather than a SQLite file."""
    return str(where).startswith(("postgresql://", "postgres://"))


@contextmanager
def open_checkpointer(where: str | Path | None = None) -> Iterator[Any]:
    """A checkpointer for ``build_crs_graph``, closed on exit.

    Args:
        where: A SQLite file path (created with its parent directory; pruned per turn,
            :class:`TurnSaver`) or a ``postgresql://`` URL (``PostgresSaver``, tables set up on first
            use). ``None``: :func:`default_checkpointer`.

    Raises:
        DataError: The Postgres extra is not installed.
    """
    where = where or default_checkpointer()
    if is_postgres(where):
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError as exc:
            from crsdata.paths import DataError

            raise DataError(f"{redact(where)} is a PostgreSQL URL but the Postgres checkpointer is not installed; "
                            "run `pip install -e '.[postgres]'`") from exc  # fmt: skip
        with PostgresSaver.from_conn_string(str(where)) as saver:
            saver.setup()
            yield saver
        return
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    with TurnSaver.from_conn_string(str(path)) as saver:
        yield saver


@asynccontextmanager
async def server_checkpointer() -> AsyncIterator[Any]:
    """The LangGraph server's checkpointer (``"checkpointer"`` in langgraph.json).

    ``langgraph dev`` keeps threads in memory and writes them to disk every 10 seconds, so a server
    killed mid-turn loses the turns of its last seconds. This checkpointer commits every step of every
    run instead: ``$LLMCRS_SERVER_CHECKPOINTER`` (a SQLite path or a ``postgresql://`` URL), else
    ``$LLMCRS_HOME/server.sqlite``. LangGraph's async savers, because the server calls ``aput``/``aget``.
    The thread records themselves still live in the dev server's memory; ``python -m agent serve``
    re-registers the threads they lost (:func:`agent.server.recover_threads`).
    """
    where = server_checkpoints()
    if is_postgres(where):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(where) as saver:
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    Path(where).parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(where) as saver:
        yield saver


def server_checkpoints() -> str:
    """Where the LangGraph server keeps checkpoints: ``$LLMCRS_SERVER_CHECKPOINTER``, else ``$LLMCRS_HOME/server.sqlite``."""
    from crsdata.paths import home_dir

    return os.environ.get("LLMCRS_SERVER_CHECKPOINTER") or str(home_dir() / "server.sqlite")


def checkpointed_threads(where: str | Path) -> list[str]:
    """The ids of the threads with checkpoints in ``where`` (a SQLite path or a ``postgresql://`` URL);
    empty when nothing was stored there yet."""
    query = "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = ''"
    if is_postgres(where):
        import psycopg

        with psycopg.connect(str(where)) as conn:
            if conn.execute("SELECT to_regclass('checkpoints')").fetchone() == (None,):
                return []
            return [str(row[0]) for row in conn.execute(query)]
    if not Path(where).exists():
        return []
    import sqlite3

    with closing(sqlite3.connect(f"file:{where}?mode=ro", uri=True)) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'").fetchone():
            return []
        return [str(row[0]) for row in conn.execute(query)]
