"""Serve expert tools as a small ASGI app (Starlette under uvicorn), with limits a public endpoint needs.

The protocol is the one :func:`tools.remote.remote_experts` speaks, two JSON routes:

- ``GET /experts`` lists ``{name, description, subtask, args_schema}`` (:func:`tools.remote.describe`);
- ``POST /experts/<name>`` takes the arguments as a JSON object and answers ``{"output": ...}``;

plus ``GET /health`` (``{"status": "ok", "experts": [...]}``) for probes. Every failure is a JSON
``{"error": ...}``, never a traceback page: bad JSON or arguments ``400``, an unknown expert or route
``404``, a body over ``max_request_bytes`` ``413`` (before it is read), an expert that raised ``500``,
one slower than ``timeout_seconds`` ``504``, one that finds ``max_workers`` calls still running ``503``. The client turns any of them into a ``ToolException`` the
graph answers as "unavailable".

An expert is sync code (a LangChain tool); each call runs in a worker thread so a slow one never
blocks the others. Python cannot stop a thread: a call past its timeout is answered ``504`` at once
and its thread is abandoned to finish in the background, still counted among the ``max_workers``
calls that may run at once, so a stuck expert cannot make the server start threads without bound.

Needs Starlette and uvicorn (both come with the ``studio`` extra); the client in :mod:`tools.remote`
does not.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import anyio
import anyio.to_thread
import uvicorn
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tools.remote import describe

# An expert's arguments are a category, an item and the (bounded) dialogue so far: 1 MiB is ample.
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
DEFAULT_MAX_WORKERS = 8  # expert calls at once (an abandoned call keeps its worker until it ends)
# Below the client's default timeout (60 s), so a slow expert is reported as such rather than as a dead endpoint.
DEFAULT_TIMEOUT_SECONDS = 30.0
# How long stopping waits for calls in flight before closing their connections.
GRACEFUL_SHUTDOWN_SECONDS = 5


class RequestSizeLimit:
    """Pure ASGI middleware refusing request bodies over ``max_bytes`` with ``413`` and a JSON message.

    A declared ``Content-Length`` over the limit is refused before the body is read; any other body is
    read and counted up to the limit (headers are not trusted), then replayed to the app. Starlette has no body limit of its
    own, hence this small middleware.

    Args:
        app: The wrapped ASGI app.
        max_bytes: The largest body admitted.
        hint: Appended to the message after the limit, e.g. the setting that changes it.
        field: The JSON key of the message (``"detail"`` as Starlette's own errors).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, hint: str = "", field: str = "detail") -> None:
        self.app, self.max_bytes, self.hint, self.field = app, max_bytes, hint, field

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(int(declared), send)
            return
        # Whatever the headers say (a server may frame a body by Transfer-Encoding despite a small
        # Content-Length), read the body counting its bytes up to the limit, then replay it to the app.
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

        await self.app(scope, replayed(messages, receive), send)

    async def _refuse(self, size: int, send: Send) -> None:
        message = f"request body of {size} bytes is over the limit of {self.max_bytes} bytes"
        body = json.dumps({self.field: f"{message} {self.hint}" if self.hint else message}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def replayed(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands back ``messages`` (a body already read) first, then reads on."""

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (no such route, wrong method) as JSON rather than plain text."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
    """Anything the routes did not answer themselves, as JSON rather than a traceback page."""
    return _error(500, f"{type(exc).__name__}: {exc}")


def create_expert_app(
    tools: list[BaseTool],
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> Starlette:
    """The ASGI app serving ``tools`` (see the module docstring for routes and errors).

    Args:
        tools: The experts, served under their names.
        max_request_bytes: Larger request bodies get ``413``.
        timeout_seconds: An expert call that takes longer gets ``504``.
        max_workers: Expert calls running at once, abandoned ones included; a call that finds them all
            busy gets ``503`` at once. Threads never pile up behind a stuck expert.

    Returns:
        The Starlette app; ``app.state.tools`` maps names to tools.
    """
    by_name = {t.name: t for t in tools}
    # anyio's thread limiter hands a call's token back when the call is abandoned, while its thread runs
    # on; this semaphore is released by the thread itself, so stuck calls keep counting.
    workers = threading.BoundedSemaphore(max_workers)

    def run_and_release(tool: BaseTool, args: dict[str, Any]) -> Any:
        try:
            return tool.invoke(args)
        finally:
            workers.release()

    async def health(request: Request) -> JSONResponse:  # noqa: ARG001
        return JSONResponse({"status": "ok", "experts": list(by_name)})

    async def list_experts(request: Request) -> JSONResponse:  # noqa: ARG001
        return JSONResponse([describe(t) for t in by_name.values()])

    async def call_expert(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        tool = by_name.get(name)
        if tool is None:
            return _error(404, f"unknown expert {name!r}; this endpoint serves {', '.join(by_name) or 'no experts'}")
        try:
            args = json.loads(await request.body() or b"{}")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            return _error(400, f"bad request: the body is not JSON ({exc})")
        if not isinstance(args, dict):
            return _error(400, f"bad request: the arguments must be a JSON object, not {type(args).__name__}")
        schema = tool.args_schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            try:  # checked here so that only the caller's mistakes are 400, not errors inside the expert
                schema.model_validate(args)
            except ValidationError as exc:
                return _error(400, f"bad arguments for expert {name!r}: {exc}")
        if not workers.acquire(blocking=False):
            return _error(503, f"all {max_workers} expert workers are busy (calls past their timeout still running); retry later")
        try:
            with anyio.move_on_after(timeout_seconds) as scope:
                # abandon_on_cancel: the timeout answers at once instead of waiting for the thread to end.
                output = await anyio.to_thread.run_sync(run_and_release, tool, args, abandon_on_cancel=True)
            if scope.cancelled_caught:
                return _error(504, f"expert {name!r} did not answer within the timeout of {timeout_seconds:g} s")
            return JSONResponse({"output": output})
        except Exception as exc:  # the client shows it; the server keeps serving
            return _error(500, f"{type(exc).__name__}: {exc}")

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/experts", list_experts, methods=["GET"]),
        Route("/experts/{name}", call_expert, methods=["POST"]),
    ]
    hint = "(python -m tools serve --max-request-bytes)"
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestSizeLimit, max_bytes=max_request_bytes, hint=hint, field="error")],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.tools = by_name
    return app


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ExpertServer:
    """Serves tools at ``http://host:port`` with uvicorn in a background thread. Use as a context manager.

    The socket is bound here (``port=0`` picks a free port), so :attr:`url` is known before serving and
    a port in use raises :class:`OSError` at once.

    Args:
        tools: The experts.
        host: The interface to listen on.
        port: The port; ``0`` for a free one.
        **app_kwargs: Passed to :func:`create_expert_app` (``max_request_bytes``, ``timeout_seconds``).
    """

    def __init__(self, tools: list[BaseTool], host: str = "127.0.0.1", port: int = 0, **app_kwargs: Any) -> None:
        self.tools = {t.name: t for t in tools}
        self.app = create_expert_app(tools, **app_kwargs)
        self._socket = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.url = _url(host, self._socket.getsockname()[1])
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self, timeout: float = 10.0) -> ExpertServer:
        """Serve in a background thread; return once the server accepts connections.

        Raises:
            RuntimeError: The server did not start within ``timeout`` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:  # uvicorn offers no start event to wait on
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the expert server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (calls in flight get a few seconds) and close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(GRACEFUL_SHUTDOWN_SECONDS + 5)
        self._socket.close()

    def __enter__(self) -> ExpertServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    tools: list[BaseTool],
    host: str = "127.0.0.1",
    port: int = 8765,
    **app_kwargs: Any,
) -> None:
    """Serve ``tools`` with uvicorn in the foreground until interrupted; ``app_kwargs`` go to
    :func:`create_expert_app` (``max_request_bytes``, ``timeout_seconds``, ``max_workers``)."""
    app = create_expert_app(tools, **app_kwargs)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
