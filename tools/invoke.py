"""How the graph calls an expert tool: its description on one line (what the matching prompt lists), the
keyword arguments a sub-task call gives it, and its output in one shape (a dict with ``text``, and
``items`` for a recommender)."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.tools import BaseTool

from tools.subtasks import ARG_KEYS


def description_line(tool: BaseTool) -> str:
    """A tool's description on one line (what the matching prompt lists)."""
    return " ".join(tool.description.split())


def expert_kwargs(tool: BaseTool, args: dict[str, str], top_k: int, asked: list[str]) -> dict[str, Any]:
    """The keyword arguments of a sub-task call that ``tool`` takes, with the ranking length (``top_k``) and the
    attributes asked before (``asked``) where it takes them."""
    kwargs: dict[str, Any] = {ARG_KEYS[a]: v for a, v in args.items() if ARG_KEYS[a] in tool.args}
    if "top_k" in tool.args:
        kwargs["top_k"] = top_k
    if "asked" in tool.args:  # an elicitor that takes the conversation's memory of its questions
        kwargs["asked"] = asked
    return kwargs


def normalise(output: Any) -> dict[str, Any]:
    """An expert's output as a dict with ``text`` (and ``items`` for a list)."""
    if isinstance(output, dict):
        out = dict(output)
        out.setdefault("text", ", ".join(map(str, out.get("items", [])[:3])) or json.dumps(output)[:300])
        return out
    if isinstance(output, list):
        return {"items": [str(x) for x in output], "text": ", ".join(map(str, output[:3]))}
    return {"text": str(output)}


def invoke_expert(tool: BaseTool, args: dict[str, str], top_k: int, asked: list[str]) -> dict[str, Any]:
    """Run an expert on a sub-task call's arguments; its normalised output."""
    return normalise(tool.invoke(expert_kwargs(tool, args, top_k, asked)))
