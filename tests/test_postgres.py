"""Sessions in PostgreSQL (and, for the kill test, SQLite too): a real server started in a temporary directory (``initdb``, ``pg_ctl``), the
terminal chat as the product path. Two processes continue one thread; a process killed with SIGKILL in
the middle of a turn loses no finished turn, and the next session answers the interrupted message."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, skip_or_fail

pytestmark = pytest.mark.e2e


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        skip_or_fail("PostgreSQL's initdb/pg_ctl are not on PATH")
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
    except ImportError:
        skip_or_fail("the Postgres checkpointer is not installed (pip install -e '.[postgres]')")
    folder = Path(tempfile.mkdtemp(prefix="llmcrs-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "postgres"]), check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_postgres([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]), check=True, capture_output=True
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def chat(url: str, thread: str, real_root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LLMCRS_DATA_DIR": str(real_root), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "agent", "chat", "--db", url, "--thread", thread, "--manager", "rule"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 180) -> str:
    seen, deadline = "", time.monotonic() + timeout
    assert proc.stdout is not None
    while marker not in seen:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"the chat ended before {marker!r}: {seen[-2000:]}")
        seen += line
        if time.monotonic() > deadline:
            pytest.fail(f"no {marker!r} in {timeout} s: {seen[-2000:]}")
    return seen


def thread_messages(url: str, thread: str) -> list[tuple[str, str]]:
    from agent.memory import open_checkpointer

    with open_checkpointer(url) as saver:
        state = saver.get_tuple({"configurable": {"thread_id": thread}})
    messages = state.checkpoint["channel_values"].get("messages", []) if state else []
    return [(m.type, str(m.content)) for m in messages]


def test_two_processes_continue_one_thread(postgres_url, real_root):
    first = chat(postgres_url, "shared", real_root)
    out, _ = first.communicate("I loved The Shining (1980), something like it?\n", timeout=300)
    assert first.returncode == 0 and "4 response" in out, out[-2000:]
    second = chat(postgres_url, "shared", real_root)
    out, _ = second.communicate("why that one?\n", timeout=300)
    assert second.returncode == 0 and "you> I loved The Shining (1980)" in out, out[-2000:]  # the history of process one
    kinds = [kind for kind, _ in thread_messages(postgres_url, "shared")]
    assert kinds == ["human", "ai", "human", "ai"]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each checkpointer the chat can use: the embedded SQLite file and PostgreSQL."""
    return str(tmp_path / "chat.sqlite") if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_a_killed_process_loses_no_finished_turn(store, real_root):
    proc = chat(store, "killed", real_root)
    assert proc.stdin is not None
    proc.stdin.write("I like horror movies from the 1980s\n")
    proc.stdin.flush()
    read_until(proc, "4 response")  # readline returns the line when it ends, i.e. when the turn has ended
    proc.stdin.write("something scarier please\n")
    proc.stdin.flush()
    read_until(proc, "1 sub-task")  # mid-turn: detection done, the response not yet
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    said = thread_messages(store, "killed")
    assert said[:2] == [("human", "I like horror movies from the 1980s"), ("ai", said[1][1])] and said[1][1]  # the finished turn
    resumed = chat(store, "killed", real_root)  # the next session finishes the interrupted turn
    out, _ = resumed.communicate("\n", timeout=300)
    assert resumed.returncode == 0 and "finishing it now" in out and "4 response" in out, out[-2000:]
    said = thread_messages(store, "killed")
    assert [kind for kind, _ in said] == ["human", "ai", "human", "ai"] and said[2][1] == "something scarier please", said


def test_a_server_killed_mid_turn_keeps_every_turn_in_postgres(postgres_url, real_root, tmp_path):
    """``python -m agent serve`` with its checkpoints in PostgreSQL (``LLMCRS_SERVER_CHECKPOINTER``), killed
    with SIGKILL mid-turn and restarted: the same checks as the SQLite case in ``tests/test_server.py``."""
    import psycopg

    from tests.conftest import server_env
    from tests.test_server import kill_server_mid_turn

    with psycopg.connect(postgres_url, autocommit=True) as conn:  # a database of its own: recovery reads every thread in it
        conn.execute("CREATE DATABASE server_kill")
    env = {**server_env(real_root, tmp_path), "LLMCRS_SERVER_CHECKPOINTER": postgres_url.rsplit("/", 1)[0] + "/server_kill"}
    kill_server_mid_turn(env, tmp_path, resume=True)
