"""Hybrid endpoints: use an expert served over HTTP as a local tool.

The protocol is two JSON routes: ``GET /experts`` lists ``{name, description, subtask, args_schema}``
(:func:`describe`); ``POST /experts/<name>`` takes the arguments as a JSON object and answers
``{"output": ...}``, or an error status with ``{"error": ...}``. The server side is
:mod:`tools.serving` (``python -m tools serve``, :class:`~tools.serving.ExpertServer`); this client
needs only httpx.
"""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.tools import BaseTool, StructuredTool, ToolException

from tools.base import subtask_of


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
            why = (payload.get("error") or payload.get("detail") or "") if isinstance(payload, dict) else ""
            raise ToolException(f"expert endpoint {url} failed for {name}: HTTP {resp.status_code} {why}".strip())
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
