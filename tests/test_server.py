"""The LangGraph server API (``python -m agent serve`` = ``langgraph dev`` on langgraph.json), driven by
the official ``langgraph_sdk`` client on a free loopback port: conversations on threads, malformed
input refused with the field and the limit, oversized requests refused before any run."""

from __future__ import annotations

import httpx
import pytest

from agent.boundary import MAX_MESSAGE_CHARS
from tests.conftest import SERVER_MAX_REQUEST_BYTES as MAX_REQUEST_BYTES

pytestmark = pytest.mark.e2e


def test_limits_route_and_oversized_request_refused_before_a_run(server):
    limits = httpx.get(f"{server}/llmcrs/limits").json()
    assert limits["max_request_bytes"] == MAX_REQUEST_BYTES and limits["max_message_chars"] == MAX_MESSAGE_CHARS
    thread = httpx.post(f"{server}/threads", json={}).json()["thread_id"]
    body = {"assistant_id": "llmcrs", "input": {"messages": [{"role": "user", "content": "x" * 50_000}]}}
    r = httpx.post(f"{server}/threads/{thread}/runs/wait", json=body, timeout=30)
    assert r.status_code == 413 and str(MAX_REQUEST_BYTES) in r.json()["detail"]
    assert httpx.get(f"{server}/threads/{thread}/runs").json() == []  # no run was queued


MALFORMED = {
    "list of arbitrary dicts": ({"messages": [{"role": "user", "content": [{"foo": "bar"}, {"type": "weird", "x": 1}]}]}, "content"),
    "dict that is no message": ({"messages": [{"foo": "bar"}]}, "messages[0]"),
    "oversized message (under the request limit)": (
        {"messages": [{"role": "user", "content": "y" * (MAX_MESSAGE_CHARS + 10)}]},
        str(MAX_MESSAGE_CHARS),
    ),
    "no messages key": ({}, "messages"),
    "content of a wrong type": ({"messages": [{"role": "user", "content": 42}]}, "content"),
}


def test_conversation_and_malformed_input_through_the_sdk(server):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread = client.threads.create()["thread_id"]
    first = client.runs.wait(
        thread, "llmcrs", input={"messages": [{"role": "user", "content": "I loved The Shining (1980), something like it?"}]}
    )
    assert first["response"] and not first.get("error")
    ids = [m["id"] for m in client.threads.get_state(thread)["values"]["messages"]]
    for case, (payload, names) in MALFORMED.items():
        out = client.runs.wait(thread, "llmcrs", input=payload)
        assert out["error"].startswith("input refused:") and names in out["error"], (case, out.get("error"))
        assert [m["id"] for m in client.threads.get_state(thread)["values"]["messages"]] == ids, case  # thread unchanged
    second = client.runs.wait(thread, "llmcrs", input={"messages": [{"role": "user", "content": "why that one?"}]})
    assert second["response"] and not second.get("error")
    assert second["subtask"]["name"] == "explanation"  # the second message sees the first


def test_run_streams_each_stage_and_the_checked_response(server):
    """The stages stream as updates; the reply streams as ``custom`` events of the checked text (the
    grounded part first), and the LLM's raw tokens never leave the server."""
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread = client.threads.create()["thread_id"]
    nodes, replies, raw = [], [], 0
    for part in client.runs.stream(thread, "llmcrs", input={"messages": [{"role": "user", "content": "I loved Heat (1995), what else would I like?"}]},
                                   stream_mode=["updates", "custom", "messages-tuple"]):  # fmt: skip
        if part.event == "updates":
            nodes += list(part.data)
        elif part.event == "custom":
            replies.append(part.data["reply"])
        elif part.event == "messages":
            chunk, meta = part.data
            raw += meta.get("langgraph_node") == "respond" and chunk.get("type") == "AIMessageChunk"
    print(f"streamed events: {len(nodes)} stage updates {nodes}, replies {replies}")
    assert [n for n in nodes if n in ("admit", "detect", "execute", "respond")] == ["admit", "detect", "execute", "respond"]
    state = client.threads.get_state(thread)["values"]
    assert raw == 0 and replies and replies[-1] == state["response"]
    assert all(state["response"].startswith(r) for r in replies) or state["trajectory"][-1].get("fallback")  # nothing taken back


@pytest.mark.parametrize("resume", [True, False], ids=["resumed", "shown-unanswered"])
def test_a_server_killed_mid_turn_keeps_every_turn(real_root, tmp_path, resume):
    """SIGKILL of the whole server during the second turn: after a restart the first turn is there, and the
    interrupted message is answered (resumed from its last step) or stored and shown as not answered.
    (``tests/test_postgres.py`` runs the same with the server's checkpoints in PostgreSQL.)"""
    from tests.conftest import server_env

    kill_server_mid_turn(server_env(real_root, tmp_path), tmp_path, resume)


def kill_server_mid_turn(env: dict[str, str], tmp_path, resume: bool) -> None:
    """Start the server with ``env``, kill it with SIGKILL between detection and the response of a second
    turn, restart it, and check that no turn was lost."""
    import os
    import signal
    import time

    from langgraph_sdk import get_sync_client

    from agent.server import running_server

    opening, question = "I loved The Shining (1980), something like it?", "why that one?"
    with running_server(tmp_path / "first.log", env=env) as served:
        client = get_sync_client(url=served.url)
        thread = client.threads.create()["thread_id"]
        first = client.runs.wait(thread, "llmcrs", input={"messages": [{"role": "user", "content": opening}]})
        stages = []
        for part in client.runs.stream(
            thread, "llmcrs", input={"messages": [{"role": "user", "content": question}]}, stream_mode="updates"
        ):
            stages += list(part.data) if part.event == "updates" else []
            if "detect" in stages:  # mid-turn: detected, the expert and the response still to come
                os.killpg(served.pid, signal.SIGKILL)
                break
    assert "respond" not in stages
    options = () if resume else ("--no-resume",)
    with running_server(tmp_path / "second.log", *options, env=env) as served:
        client = get_sync_client(url=served.url)
        deadline = time.monotonic() + 120
        while not any(t["thread_id"] == thread for t in client.threads.search(limit=100)):  # re-registered after start-up
            assert time.monotonic() < deadline, (tmp_path / "second.log").read_text()[-2000:]
            time.sleep(1)
        while resume and not client.runs.list(thread):  # the run that finishes the interrupted turn
            assert time.monotonic() < deadline, (tmp_path / "second.log").read_text()[-2000:]
            time.sleep(1)
        for run in client.runs.list(thread):
            client.runs.join(thread, run["run_id"])
        state = client.threads.get_history(thread, limit=1)[0]  # the last checkpoint
        said = [(m["type"], m["content"]) for m in state["values"]["messages"]]
        assert said[:3] == [("human", opening), ("ai", first["response"]), ("human", question)]
        if resume or not state["next"]:
            # answered once: by our resumption, or by langgraph dev's own retry of a run its last save
            # (every 10 s) saw running, which --no-resume cancels when it finds it but may find finished;
            # a retried input keeps its message id (agent.webapp.StableMessageIds), so nothing is doubled
            assert not state["next"] and len(said) == 4
            assert said[3][0] == "ai" and state["values"]["subtask"]["name"] == "explanation"
        else:
            assert len(said) == 3  # the question is kept, visibly unanswered
            answered = client.runs.wait(thread, "llmcrs", input=None)  # the client can finish it
            assert answered["subtask"]["name"] == "explanation" and answered["messages"][-1]["type"] == "ai"


def test_concurrent_runs_through_the_server_at_4_jobs_decide_as_each_does_alone(real_root, tmp_path):
    """16 conversations with distinct first turns, through the LangGraph server at 4 concurrent runs per
    worker: each gets exactly the sub-task, expert and items it gets when run alone on the same server.
    The turn's LLM features travel in the run's state, so no run reads another's
    (``$LLMCRS_CONCURRENCY_ROUNDS`` repeats the concurrent part; the closing figures used 10)."""
    import asyncio
    import os

    from langgraph_sdk import get_client

    from agent.server import running_server
    from eval.scripted import SCRIPTS
    from tests.conftest import server_env
    from tools.subtasks import ELICITATION, RECOMMENDATION

    texts = [t for script in SCRIPTS[:8] for t, _ in script[:2]]
    assert len(set(texts)) == 16
    rounds = int(os.environ.get("LLMCRS_CONCURRENCY_ROUNDS", "1"))

    async def one(client, text: str) -> tuple[str, str | None, list[str]]:
        thread = (await client.threads.create())["thread_id"]
        out = await client.runs.wait(thread, "llmcrs", input={"messages": [{"role": "user", "content": text}]})
        return out["subtask"]["name"], out.get("expert"), list((out.get("expert_output") or {}).get("items", []))[:10]

    async def drive(url: str) -> tuple[list, list[list]]:
        client = get_client(url=url)
        alone = [await one(client, t) for t in texts]
        together = [await asyncio.gather(*(one(client, t) for t in texts)) for _ in range(rounds)]
        return alone, together

    with running_server(tmp_path / "server.log", "--jobs", "4", env=server_env(real_root, tmp_path)) as served:
        alone, together = asyncio.run(drive(served.url))
    assert {a[0] for a in alone} >= {RECOMMENDATION, ELICITATION}  # the inputs exercise both paths
    for r, results in enumerate(together):
        assert list(results) == alone, f"round {r}: {[t for t, a, b in zip(texts, alone, results, strict=True) if a != b]}"
