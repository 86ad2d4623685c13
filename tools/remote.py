"""Hybrid endpoints: serve any expert tool over HTTP, and use a remote one as a local tool.

The server is the standard library's threading HTTP server: the protocol is two JSON routes and
needs no web framework. ``GET /experts`` lists ``{name, description, subtask, args_schema}``;
``POST /experts/<name>`` takes the arguments as a JSON object and answers ``{"output": ...}``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from langchain_core.tools import BaseTool, StructuredTool, ToolException

from tools.base import subtask_of


class ExpertServer:
    """Serves tools at ``http://host:port``; ``port=0`` picks a free port. Use as a context manager."""

    def __init__(self, tools: list[BaseTool], host: str = "127.0.0.1", port: int = 0) -> None:
        self.tools = {t.name: t for t in tools}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _send(self, code: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/experts":
                    return self._send(404, {"error": f"no route {self.path}"})
                self._send(200, [describe(t) for t in server.tools.values()])

            def do_POST(self) -> None:  # noqa: N802
                name = self.path.rstrip("/").rsplit("/", 1)[-1]
                tool = server.tools.get(name)
                if not self.path.startswith("/experts/") or tool is None:
                    return self._send(404, {"error": f"unknown expert {name!r}"})
                try:
                    args = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                    if not isinstance(args, dict):
                        raise ValueError("arguments must be a JSON object")
                except ValueError as exc:
                    return self._send(400, {"error": f"bad request: {exc}"})
                try:
                    self._send(200, {"output": tool.invoke(args)})
                except Exception as exc:  # the client shows it; the server keeps serving
                    self._send(500, {"error": f"{type(exc).__name__}: {exc}"})

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> ExpertServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ExpertServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe(tool: BaseTool) -> dict[str, Any]:
    """What a remote client needs to rebuild the tool."""
    schema = tool.args_schema if isinstance(tool.args_schema, dict) else tool.get_input_schema().model_json_schema()  # type: ignore[union-attr]
    return {"name": tool.name, "description": tool.description, "subtask": subtask_of(tool), "args_schema": schema}


def remote_expert(url: str, info: dict[str, Any], timeout: float = 60.0) -> BaseTool:
    """A tool that runs the expert ``info["name"]`` at the endpoint ``url``.

    Errors of the endpoint (unreachable, timeout, HTTP error) become a :class:`ToolException`
    that names the endpoint; the graph turns it into a clear answer to the user.
    """
    name = info["name"]

    def call(**kwargs: Any) -> Any:
        try:
            resp = httpx.post(f"{url}/experts/{name}", json=kwargs, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ToolException(f"expert endpoint {url} is unreachable ({type(exc).__name__}: {exc})") from exc
        payload = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200:
            raise ToolException(f"expert endpoint {url} failed for {name}: HTTP {resp.status_code} {payload.get('error', '')}".strip())
        return payload["output"]

    tool = StructuredTool.from_function(func=call, name=name, description=info["description"], args_schema=info["args_schema"])
    tool.metadata = {"subtask": info.get("subtask"), "endpoint": url}
    return tool


def remote_experts(url: str, timeout: float = 60.0) -> list[BaseTool]:
    """Every expert served at ``url``, as tools.

    Raises:
        ConnectionError: The endpoint does not answer.
    """
    try:
        infos = httpx.get(f"{url.rstrip('/')}/experts", timeout=timeout).raise_for_status().json()
    except httpx.HTTPError as exc:
        raise ConnectionError(f"expert endpoint {url} is unreachable: {exc}") from exc
    return [remote_expert(url.rstrip("/"), info, timeout) for info in infos]
