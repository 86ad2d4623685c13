"""The ASGI app that ``langgraph.json`` mounts beside the LangGraph server API (``http.app``).

It adds what the server does not bring: a request size limit. A body over
:data:`MAX_REQUEST_BYTES` (``LLMCRS_MAX_REQUEST_BYTES``) gets ``413`` with a JSON ``detail`` naming the
limit, before the server parses it or queues a run; what passes is then checked message by message
at the graph's input boundary (:mod:`agent.boundary`). Starlette has no body limit of its own, hence
this small middleware.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.boundary import MAX_INPUT_MESSAGES, MAX_MESSAGE_CHARS

# Room for a full input (MAX_INPUT_MESSAGES messages at the character limit, UTF-8, JSON) is far more
# than a chat needs; the default admits any input the boundary would accept one message of, with headroom.
MAX_REQUEST_BYTES = int(os.environ.get("LLMCRS_MAX_REQUEST_BYTES", 64 * 1024))


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


def create_app(**kwargs: Any) -> Starlette:
    """The mounted app: the ``/llmcrs/limits`` route and the request size limit on every route."""
    return Starlette(routes=[Route("/llmcrs/limits", limits)], middleware=[Middleware(RequestSizeLimit, **kwargs)])


app = create_app()
