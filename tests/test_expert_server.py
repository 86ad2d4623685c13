"""The expert server (``tools.serving``: Starlette under uvicorn) with fake experts: its routes, its
limits and its errors, and the client (``tools.remote``) against it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.tools import BaseTool, ToolException
from starlette.testclient import TestClient

from tools.base import expert_tool
from tools.remote import remote_experts
from tools.serving import ExpertServer, create_expert_app

LIMIT = 2048
TIMEOUT = 0.3
SLOW_SECONDS = 1.5
slow_done = threading.Event()


def echo(category: str, dialogue_context: str, top_k: int = 3) -> dict[str, Any]:
    """Echo the dialogue back as items.

    Args:
        category: The item category.
        dialogue_context: The dialogue so far.
        top_k: How many items.
    """
    return {"items": [f"{category} {i}" for i in range(top_k)], "text": dialogue_context}


def slow(item_name: str) -> dict[str, Any]:
    """Take longer than the server's timeout.

    Args:
        item_name: The item.
    """
    time.sleep(SLOW_SECONDS)
    slow_done.set()
    return {"text": item_name}


def broken(item_name: str) -> dict[str, Any]:
    """Always fail.

    Args:
        item_name: The item.
    """
    raise RuntimeError(f"no data for {item_name}")


def fake_experts() -> list[BaseTool]:
    return [expert_tool(echo, "recommendation"), expert_tool(slow, "item detail search"), expert_tool(broken, "explanation")]


@pytest.fixture(scope="module")
def server() -> Iterator[ExpertServer]:
    with ExpertServer(fake_experts(), max_request_bytes=LIMIT, timeout_seconds=TIMEOUT) as srv:
        yield srv


def test_health_lists_the_experts(server):
    r = httpx.get(f"{server.url}/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "experts": ["echo", "slow", "broken"]}


def test_remote_experts_match_in_process(server):
    remote = {t.name: t for t in remote_experts(server.url)}
    local = {t.name: t for t in fake_experts()}
    assert remote.keys() == local.keys()
    args = {"category": "movie", "dialogue_context": "User: hi", "top_k": 2}
    assert remote["echo"].invoke(args) == local["echo"].invoke(args) == {"items": ["movie 0", "movie 1"], "text": "User: hi"}
    for name, tool in local.items():
        assert remote[name].description == tool.description and remote[name].metadata["subtask"] == tool.metadata["subtask"]


def test_request_over_the_limit_is_413_naming_the_limit(server):
    r = httpx.post(f"{server.url}/experts/echo", json={"category": "movie", "dialogue_context": "x" * LIMIT})
    assert r.status_code == 413 and str(LIMIT) in r.json()["error"] and "--max-request-bytes" in r.json()["error"]
    # without a declared length (chunked), the body is counted as it arrives
    chunks = (b"x" * 1000 for _ in range(5))
    r = httpx.post(f"{server.url}/experts/echo", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and str(LIMIT) in r.json()["error"]
    # under the limit, chunked, the body reaches the expert whole
    body = b'{"category": "movie", "dialogue_context": "' + b"y" * 1000 + b'"}'
    r = httpx.post(f"{server.url}/experts/echo", content=(body[i : i + 100] for i in range(0, len(body), 100)))
    assert r.status_code == 200 and r.json()["output"]["text"] == "y" * 1000


def test_slow_expert_is_504_and_the_server_stays_responsive(server):
    slow_done.clear()
    start = time.monotonic()
    r = httpx.post(f"{server.url}/experts/slow", json={"item_name": "Heat"}, timeout=10)
    assert time.monotonic() - start < SLOW_SECONDS  # answered at the timeout, not when the expert ends
    assert r.status_code == 504 and "'slow'" in r.json()["error"] and f"{TIMEOUT:g} s" in r.json()["error"]
    assert not slow_done.is_set()  # the expert is still running in its abandoned thread...
    r = httpx.post(f"{server.url}/experts/echo", json={"category": "book", "dialogue_context": "", "top_k": 1}, timeout=2)
    assert r.status_code == 200 and r.json()["output"]["items"] == ["book 0"]  # ...and other calls are served meanwhile
    assert httpx.get(f"{server.url}/health", timeout=2).status_code == 200
    # the client turns it into a ToolException naming the endpoint and the status
    slow_remote = next(t for t in remote_experts(server.url) if t.name == "slow")
    with pytest.raises(ToolException, match=r"failed for slow: HTTP 504 expert 'slow' did not answer"):
        slow_remote.invoke({"item_name": "Heat"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'{"category": "movie"}', "bad arguments for expert 'echo'"),
        (b'{"category": "movie", "dialogue_context": "", "top_k": "many"}', "top_k"),
    ],
)
def test_bad_request_is_400_with_a_message(server, body, message):
    r = httpx.post(f"{server.url}/experts/echo", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and message in r.json()["error"]


def test_unknown_expert_route_or_method_is_json(server):
    r = httpx.post(f"{server.url}/experts/nope", json={})
    assert r.status_code == 404 and r.json()["error"] == "unknown expert 'nope'; this endpoint serves echo, slow, broken"
    r = httpx.get(f"{server.url}/nowhere")
    assert r.status_code == 404 and r.json()["error"] == "Not Found: GET /nowhere"
    r = httpx.get(f"{server.url}/experts/echo")
    assert r.status_code == 405 and "GET /experts/echo" in r.json()["error"] and r.headers["allow"] == "POST"


def test_failing_expert_is_500_with_its_error(server):
    r = httpx.post(f"{server.url}/experts/broken", json={"item_name": "Heat"})
    assert r.status_code == 500 and r.json() == {"error": "RuntimeError: no data for Heat"}
    broken_remote = next(t for t in remote_experts(server.url) if t.name == "broken")
    with pytest.raises(ToolException, match="HTTP 500 RuntimeError: no data for Heat"):
        broken_remote.invoke({"item_name": "Heat"})


def test_app_without_a_server():
    with TestClient(create_expert_app(fake_experts(), max_request_bytes=10)) as client:
        assert client.get("/experts").json()[0]["name"] == "echo"
        assert client.post("/experts/echo", content=b"x" * 11).status_code == 413


def test_server_binds_at_once_and_stops():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            ExpertServer(fake_experts(), port=taken.getsockname()[1])
    server = ExpertServer(fake_experts())
    url = server.url  # known before serving: the socket is bound already
    with server:
        assert httpx.get(f"{url}/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    with pytest.raises(ConnectionError, match="unreachable"):
        remote_experts(url)


def test_agent_webapp_keeps_its_limit_and_message():
    from agent.boundary import MAX_MESSAGE_CHARS
    from agent.webapp import MAX_REQUEST_BYTES, RequestSizeLimit, create_app

    assert RequestSizeLimit.__module__ == "tools.serving" and MAX_REQUEST_BYTES > 0
    with TestClient(create_app(max_bytes=100)) as client:
        r = client.post("/llmcrs/limits", content=b"x" * 101)
        detail = r.json()["detail"]
    assert r.status_code == 413
    assert detail.startswith("request body of 101 bytes is over the limit of 100 bytes (LLMCRS_MAX_REQUEST_BYTES); ")
    assert f"a message may hold {MAX_MESSAGE_CHARS} characters" in detail


def test_run_inputs_get_stable_message_ids_and_other_requests_pass_unchanged():
    """A run's input messages get ids before the server stores the run (a run langgraph dev retries
    after a crash then replaces its own message instead of adding it twice); nothing else changes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from agent.webapp import StableMessageIds

    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"body": body.decode(), "length": request.headers.get("content-length")})

    app = StableMessageIds(Starlette(routes=[Route("/{path:path}", echo, methods=["POST"])]))
    run = {"input": {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "there", "id": "mine"}]}}
    with TestClient(app) as client:
        for path in ("/threads/t1/runs", "/threads/t1/runs/stream", "/threads/t1/runs/wait", "/runs/wait"):
            got = client.post(path, json=run).json()
            messages = json.loads(got["body"])["input"]["messages"]
            assert messages[0]["id"] and messages[1]["id"] == "mine" and int(got["length"]) == len(got["body"])
        for path, body in (("/threads/t1/history", json.dumps(run)), ("/threads/t1/runs", "not json")):
            assert client.post(path, content=body).json()["body"] == body


def test_cli_serves_with_its_flags(monkeypatch, capsys):
    import tools.__main__ as cli

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cli, "default_experts", lambda dataset: fake_experts())
    monkeypatch.setattr(cli, "serve", lambda *args, **kwargs: calls.append((args[1:], kwargs)))
    cli.main(["serve", "--port", "9999", "--max-request-bytes", "4096", "--timeout", "2.5", "--max-workers", "3"])
    assert calls == [(("127.0.0.1", 9999), {"max_request_bytes": 4096, "timeout_seconds": 2.5, "max_workers": 3})]
    assert "serving echo, slow, broken at http://127.0.0.1:9999/experts" in capsys.readouterr().out


def test_size_limit_counts_the_body_whatever_content_length_says():
    """A small Content-Length with a large (e.g. chunked) body is still refused: the bytes are counted."""
    import asyncio

    from tools.serving import RequestSizeLimit

    reached = []

    async def app(scope, receive, send):  # the wrapped app must never see the body
        reached.append(await receive())

    body = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(3)]
    body[-1]["more_body"] = False
    sent = []

    async def receive():
        return body.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/experts/x", "headers": [(b"content-length", b"10")]}
    asyncio.run(RequestSizeLimit(app, max_bytes=1000)(scope, receive, send))
    assert sent[0]["status"] == 413 and not reached


def test_stuck_experts_hold_at_most_max_workers_threads():
    """With one worker, a call that timed out keeps it until its expert ends: the next call is refused
    with 503 at once instead of getting a new thread; once the stuck call ends, calls are served."""
    release = threading.Event()

    def stuck(item_name: str) -> dict[str, Any]:
        """Hang until the test releases it.

        Args:
            item_name: The item.
        """
        release.wait(timeout=30)
        return {"text": item_name}

    echo_args = {"category": "book", "dialogue_context": "", "top_k": 1}
    tools = [expert_tool(echo, "recommendation"), expert_tool(stuck, "item detail search")]
    with ExpertServer(tools, timeout_seconds=TIMEOUT, max_workers=1) as srv:
        threads = threading.active_count()
        assert httpx.post(f"{srv.url}/experts/stuck", json={"item_name": "Heat"}, timeout=10).status_code == 504
        for _ in range(3):  # the only worker is still busy with the abandoned call
            r = httpx.post(f"{srv.url}/experts/echo", json=echo_args, timeout=10)
            assert r.status_code == 503 and "all 1 expert workers are busy" in r.json()["error"]
        assert threading.active_count() <= threads + 1  # one worker thread, not one per call
        release.set()
        deadline = time.monotonic() + 5
        while (r := httpx.post(f"{srv.url}/experts/echo", json=echo_args, timeout=10)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)  # the stuck thread ends and hands its worker back
        assert r.status_code == 200
