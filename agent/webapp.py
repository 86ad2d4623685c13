"""The ASGI app that ``langgraph.json`` mounts beside the LangGraph server API (``http.app``).

It adds what the server does not bring: a chat page and a request size limit.

*Chat page.* ``GET /llmcrs/chat`` serves ``agent/web/chat.html`` and its script ``/llmcrs/chat.js``: a
thin client of the server API on the same origin (threads, ``runs/stream``) that shows each stage of a
turn and streams the response; ``GET /llmcrs/info`` names the dataset (``LLMCRS_DATASET``) and its domain.
The page sets model output as text only, and its Content-Security-Policy admits no inline script.

*Stable message ids.* ``langgraph dev`` saves its run records every 10 seconds and, after a crash,
runs again every run its last save saw running, with the input it was created with. A user message
sent without an id would then be added a second time. :class:`StableMessageIds` gives every message
of a run's input an id when the run is created, so a retried input replaces its own message
(``add_messages`` merges by id) and the turn is answered once.

*Size limit.* A body over :data:`MAX_REQUEST_BYTES` (``LLMCRS_MAX_REQUEST_BYTES``) gets ``413`` with a
JSON ``detail`` naming the limit, before the server parses it or queues a run; what passes is then
checked message by message at the graph's input boundary (:mod:`agent.boundary`). The middleware,
:class:`~tools.serving.RequestSizeLimit`, is shared with the expert server.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.boundary import MAX_INPUT_MESSAGES, MAX_MESSAGE_CHARS
from crsdata.registry import datasets
from tools.serving import RequestSizeLimit, replayed

# Room for a full input (MAX_INPUT_MESSAGES messages at the character limit, UTF-8, JSON) is far more
# than a chat needs; the default admits any input the boundary would accept one message of, with headroom.
MAX_REQUEST_BYTES = int(os.environ.get("LLMCRS_MAX_REQUEST_BYTES", 64 * 1024))
WEB = Path(__file__).resolve().parent / "web"
# The page's own script and the same-origin API only: inserted text can never run as script.
CHAT_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # fmt: skip
# What a 413 adds after the limit: the setting, and what the input boundary admits.
LIMIT_HINT = f"(LLMCRS_MAX_REQUEST_BYTES); a message may hold {MAX_MESSAGE_CHARS} characters, an input {MAX_INPUT_MESSAGES} messages"


async def limits(request: Request) -> JSONResponse:  # noqa: ARG001
    """What the server admits, for clients that want to check before sending."""
    return JSONResponse({"max_request_bytes": MAX_REQUEST_BYTES, "max_message_chars": MAX_MESSAGE_CHARS,
                         "max_input_messages": MAX_INPUT_MESSAGES})  # fmt: skip


async def info(request: Request) -> JSONResponse:  # noqa: ARG001
    """The graph the page talks to, the dataset it recommends from (``LLMCRS_DATASET``) and its domain."""
    dataset = os.environ.get("LLMCRS_DATASET", "redial")
    known = datasets()
    return JSONResponse({"graph": "llmcrs", "dataset": dataset, "domain": known[dataset].domain if dataset in known else "items"})


def _page(name: str, media_type: str) -> Response:
    """A file of ``agent/web`` with the page's security headers (read per request: an edit shows on reload)."""
    headers = {"Content-Security-Policy": CHAT_CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return Response((WEB / name).read_bytes(), media_type=media_type, headers=headers)


async def chat_page(request: Request) -> Response:  # noqa: ARG001
    """The chat page (``agent/web/chat.html``)."""
    return _page("chat.html", "text/html; charset=utf-8")


async def chat_script(request: Request) -> Response:  # noqa: ARG001
    """The chat page's script (``agent/web/chat.js``)."""
    return _page("chat.js", "text/javascript; charset=utf-8")


RUN_PATH = re.compile(r"^(/threads/[^/]+)?/runs(/stream|/wait)?/?$")  # the endpoints that create a run


def with_message_ids(body: bytes) -> bytes:
    """A run request's body with an id on every message of its input (other bodies unchanged).

    >>> json.loads(with_message_ids(b'{"input": {"messages": [{"role": "user", "content": "hi", "id": "m1"}]}}'))["input"]
    {'messages': [{'role': 'user', 'content': 'hi', 'id': 'm1'}]}
    >>> "id" in json.loads(with_message_ids(b'{"input": {"messages": [{"role": "user", "content": "hi"}]}}'))["input"]["messages"][0]
    True
    >>> with_message_ids(b"not json")
    b'not json'
    """
    try:
        data = json.loads(body)
    except ValueError:
        return body  # the server answers malformed JSON itself
    messages = data.get("input", {}).get("messages") if isinstance(data, dict) and isinstance(data.get("input"), dict) else None
    if not isinstance(messages, list) or not any(isinstance(m, dict) and not m.get("id") for m in messages):
        return body
    for m in messages:
        if isinstance(m, dict) and not m.get("id"):
            m["id"] = str(uuid.uuid4())
    return json.dumps(data).encode()


class StableMessageIds:
    """Pure ASGI middleware: the body of a request that creates a run gets :func:`with_message_ids`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not RUN_PATH.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, replayed([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
        body = with_message_ids(b"".join(chunks))
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"] + [(b"content-length", str(len(body)).encode())]
        await self.app({**scope, "headers": headers}, replayed([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def create_app(**kwargs: Any) -> Starlette:
    """The mounted app: the ``/llmcrs/*`` routes, the request size limit on every route, and stable ids
    for the messages of every run's input.

    Args:
        **kwargs: Passed to :class:`RequestSizeLimit` (``max_bytes``, default :data:`MAX_REQUEST_BYTES`; ``hint``).

    Returns:
        The Starlette app.
    """
    routes = [Route("/llmcrs/limits", limits), Route("/llmcrs/info", info), Route("/llmcrs/chat", chat_page),
              Route("/llmcrs/chat.js", chat_script)]  # fmt: skip
    limit = {"max_bytes": MAX_REQUEST_BYTES, "hint": LIMIT_HINT, **kwargs}
    return Starlette(routes=routes, middleware=[Middleware(RequestSizeLimit, **limit), Middleware(StableMessageIds)])


app = create_app()
