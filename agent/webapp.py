"""The ASGI app that ``langgraph.json`` mounts beside the LangGraph server API (``http.app``).

It adds what the server does not bring: a chat page and a request size limit.

*Chat page.* ``GET /llmcrs/chat`` serves ``agent/web/chat.html`` and its script ``/llmcrs/chat.js``: a
thin client of the server API on the same origin (threads, ``runs/stream``) that shows each stage of a
turn and streams the response; ``GET /llmcrs/info`` names the dataset (``LLMCRS_DATASET``) and its domain.
The page sets model output as text only, and its Content-Security-Policy admits no inline script.

*Size limit.* A body over :data:`MAX_REQUEST_BYTES` (``LLMCRS_MAX_REQUEST_BYTES``) gets ``413`` with a
JSON ``detail`` naming the limit, before the server parses it or queues a run; what passes is then
checked message by message at the graph's input boundary (:mod:`agent.boundary`). Starlette has no
body limit of its own, hence this small middleware.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.boundary import MAX_INPUT_MESSAGES, MAX_MESSAGE_CHARS

# Room for a full input (MAX_INPUT_MESSAGES messages at the character limit, UTF-8, JSON) is far more
# than a chat needs; the default admits any input the boundary would accept one message of, with headroom.
MAX_REQUEST_BYTES = int(os.environ.get("LLMCRS_MAX_REQUEST_BYTES", 64 * 1024))
WEB = Path(__file__).resolve().parent / "web"
# What each dataset recommends (crsdata.loaders.DATASETS); the page says it in its header.
DOMAINS = {"redial": "movies", "inspired": "movies", "gorecdial": "movies", "tgredial": "movies",
           "opendialkg": "movies and books", "opendialkg_books": "books"}  # fmt: skip
# The page's own script and the same-origin API only: inserted text can never run as script.
CHAT_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # fmt: skip


class RequestSizeLimit:
    """Pure ASGI middleware refusing request bodies over ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(int(declared), send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit, then replay what was read.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(size, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, size: int, send: Send) -> None:
        body = json.dumps(
            {
                "detail": f"request body of {size} bytes is over the limit of {self.max_bytes} bytes (LLMCRS_MAX_REQUEST_BYTES); "
                f"a message may hold {MAX_MESSAGE_CHARS} characters, an input {MAX_INPUT_MESSAGES} messages"
            }  # fmt: skip
        ).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def limits(request: Request) -> JSONResponse:  # noqa: ARG001
    """What the server admits, for clients that want to check before sending."""
    return JSONResponse({"max_request_bytes": MAX_REQUEST_BYTES, "max_message_chars": MAX_MESSAGE_CHARS,
                         "max_input_messages": MAX_INPUT_MESSAGES})  # fmt: skip


async def info(request: Request) -> JSONResponse:  # noqa: ARG001
    """The graph the page talks to, the dataset it recommends from (``LLMCRS_DATASET``) and its domain."""
    dataset = os.environ.get("LLMCRS_DATASET", "redial")
    return JSONResponse({"graph": "llmcrs", "dataset": dataset, "domain": DOMAINS.get(dataset, "items")})


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


def create_app(**kwargs: Any) -> Starlette:
    """The mounted app: the ``/llmcrs/*`` routes and the request size limit on every route.

    Args:
        **kwargs: Passed to :class:`RequestSizeLimit` (``max_bytes``).

    Returns:
        The Starlette app.
    """
    routes = [Route("/llmcrs/limits", limits), Route("/llmcrs/info", info), Route("/llmcrs/chat", chat_page),
              Route("/llmcrs/chat.js", chat_script)]  # fmt: skip
    return Starlette(routes=routes, middleware=[Middleware(RequestSizeLimit, **kwargs)])


app = create_app()
