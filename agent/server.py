"""The LangGraph server's lifecycle: ``langgraph dev`` on langgraph.json with this machine's limits
(:func:`serve`, what ``python -m agent serve`` runs), its recovery after a crash (:func:`recover_threads`),
and a server in the background for tests and benchmarks (:func:`running_server`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console

from crsdata.paths import SetupError

console = Console(highlight=False)


def serve(
    *,
    model: str | None = None,
    manager: str = "trained",
    dataset: str = "redial",
    data_root: str | None = None,
    host: str = "127.0.0.1",
    port: int = 2024,
    jobs: int = 2,
    max_request_bytes: int | None = None,
    reload: bool = False,
    resume: bool = True,
) -> int:
    """Run ``langgraph dev`` on this repo's langgraph.json until it exits; return its exit code.

    The server's graph (:data:`agent.graph.graph`) is built from ``LLMCRS_MODEL``, ``LLMCRS_MANAGER`` and
    ``LLMCRS_DATASET``, set here from the arguments: the same model spec as every other command. Once the
    server answers, threads a crash left behind are made whole (:func:`recover_threads`).

    Raises:
        SetupError: The LangGraph server is not installed.
    """
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    if cli is None:
        raise SetupError("the LangGraph server is not installed; run `pip install -e '.[studio]'` (or `make setup`)")
    config = Path(__file__).resolve().parents[1] / "langgraph.json"
    from agent.webapp import MAX_REQUEST_BYTES  # $LLMCRS_MAX_REQUEST_BYTES or the default

    limit = max_request_bytes or MAX_REQUEST_BYTES
    env = {**os.environ, "LLMCRS_MAX_REQUEST_BYTES": str(limit), "LLMCRS_DATASET": dataset, "LLMCRS_MANAGER": manager}
    env.update({"LLMCRS_MODEL": model} if model else {})
    env.update({"LLMCRS_DATA_DIR": str(data_root)} if data_root else {})
    cmd = [cli, "dev", "--config", str(config), "--host", host, "--port", str(port), "--no-browser",
           "--n-jobs-per-worker", str(jobs), *(() if reload else ("--no-reload",))]  # fmt: skip
    console.print(f"[bold]llmcrs[/] LangGraph server on http://{host}:{port} (graph 'llmcrs', {jobs} concurrent runs, "
                  f"requests up to {limit} bytes)")  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if wait_until_up(url, proc, timeout=300):
        recovered, resumed = recover_threads(url, resume=resume)
        if recovered or resumed:
            console.print(f"[bold]llmcrs[/] re-registered {len(recovered)} thread(s) the last server lost; "
                          f"{'answering' if resume else 'left unanswered'} the interrupted turn of {len(resumed)}: "
                          f"{', '.join(resumed) or '-'}")  # fmt: skip
    return proc.wait()


def wait_until_up(url: str, proc: Any, timeout: float) -> bool:
    """Whether ``url``/ok answered before ``proc`` exited or ``timeout`` seconds passed."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            time.sleep(0.5)
    return False


def recover_threads(url: str, *, resume: bool = True, graph: str = "llmcrs") -> tuple[list[str], list[str]]:
    """Make a restarted server whole again after a crash (SIGKILL, power loss).

    ``langgraph dev`` writes its thread and run records to disk every 10 seconds, while the server's
    checkpointer (:func:`agent.memory.server_checkpointer`) commits every step. A thread created or
    changed in the seconds before a crash therefore has its turns in the checkpointer but is unknown to
    the restarted server: it is registered again under its id. A thread whose last turn was cut off
    (its user message stored, the graph not finished) is answered by resuming from the last step
    (``resume``), else left with its message shown as not answered (``next`` non-empty in its state).

    Returns:
        The re-registered thread ids, and the ids of the threads with an interrupted turn.
    """
    from langgraph_sdk import get_sync_client
    from langgraph_sdk.errors import NotFoundError

    from agent.memory import checkpointed_threads, server_checkpoints

    client = get_sync_client(url=url)
    recovered, interrupted = [], []
    for thread in checkpointed_threads(server_checkpoints()):
        try:
            record = client.threads.get(thread)
        except NotFoundError:
            client.threads.create(thread_id=thread, if_exists="do_nothing", metadata={"graph_id": graph})
            recovered.append(thread)
            record = client.threads.get(thread)
        # langgraph dev itself retries a run that its last save (every 10 s) saw running: with resume that
        # run answers the turn (a second run would answer it twice); without, it is cancelled, as promised
        retried = [r for r in client.runs.list(thread, limit=100) if r["status"] in ("pending", "running")]
        if retried and not resume:
            for run in retried:
                client.runs.cancel(thread, run["run_id"], wait=True)
            retried = []
        # the last checkpoint says whether the graph finished (the thread state's ``next`` can read empty for a
        # re-registered thread, so the history is asked)
        last = client.threads.get_history(thread, limit=1)
        if not retried and (record["status"] == "busy" or not (last and last[0]["next"])):
            continue  # its last turn finished
        interrupted.append(thread)
        if resume and not retried:
            client.runs.create(thread, graph, input=None)
    return recovered, interrupted


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served(NamedTuple):
    """A server started by :func:`running_server`: its URL and its process group (= process id)."""

    url: str
    pid: int


@contextmanager
def running_server(log: Path, *options: str, env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[Served]:
    """``python -m agent serve <options>`` on a free loopback port, in the background; yields it once
    ``/ok`` answers and stops it on exit unless it is gone already (tests and benchmarks).

    Raises:
        SetupError: The server exited before answering (its log's tail is in the message).
        TimeoutError: It did not answer within ``timeout`` seconds.
    """
    import signal

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "agent", "serve", "--port", str(port), *options]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        if not wait_until_up(url, proc, timeout):
            if proc.poll() is not None:
                raise SetupError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            raise TimeoutError(f"the server did not start in {timeout:.0f} s: {log.read_text()[-2000:]}")
        yield Served(url, proc.pid)
    finally:
        with suppress(ProcessLookupError):  # a test may have killed it
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
