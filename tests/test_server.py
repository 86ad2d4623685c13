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


def test_run_streams_each_stage_and_the_response_token_by_token(server):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread = client.threads.create()["thread_id"]
    nodes, chunks, text = [], 0, ""
    for part in client.runs.stream(thread, "llmcrs", input={"messages": [{"role": "user", "content": "I loved Heat (1995), what else would I like?"}]},
                                   stream_mode=["updates", "messages-tuple"]):  # fmt: skip
        if part.event == "updates":
            nodes += list(part.data)
        elif part.event == "messages":
            chunk, meta = part.data
            if meta.get("langgraph_node") == "respond" and chunk.get("type") == "AIMessageChunk" and chunk.get("content"):
                chunks += 1
                text += chunk["content"]
    print(f"streamed events: {len(nodes)} stage updates {nodes}, {chunks} response chunks")
    assert [n for n in nodes if n in ("admit", "detect", "execute", "respond")] == ["admit", "detect", "execute", "respond"]
    state = client.threads.get_state(thread)["values"]
    assert chunks > 1  # real tokens, not one final chunk
    # the response is the streamed text, cleaned (a trailing cut sentence dropped) unless it fell back to the template
    final, streamed = " ".join(state["response"].split()), " ".join(text.split())
    assert streamed.startswith(final) or final.startswith(streamed) or state["trajectory"][-1].get("fallback")
