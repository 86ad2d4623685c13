"""How an expert becomes a LangChain tool: its name is its ID, its docstring its model description."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool


def expert_tool(func: Callable[..., dict[str, Any]], subtask: str, name: str | None = None) -> BaseTool:
    """Wrap ``func`` as a tool that solves ``subtask``.

    The function's Google-style docstring is parsed: its text becomes the description the matching
    LLM reads, its ``Args:`` section the argument descriptions.
    """
    tool = StructuredTool.from_function(func=func, name=name or func.__name__, parse_docstring=True, error_on_invalid_docstring=False)
    tool.metadata = {**(tool.metadata or {}), "subtask": subtask}
    return tool


RECOMMENDER_ARGS = """
Args:
    category: The item category, e.g. "movie".
    dialogue_context: The dialogue so far, one "User: ..." or "Assistant: ..." line per utterance.
    top_k: How many items to return, best first.
"""


def recommender_tool(name: str, rank: Callable[[str, int], list[str]], description: str, text: str) -> BaseTool:
    """A recommendation expert from a ranking function.

    Args:
        name: The tool's ID.
        rank: ``(dialogue_context, top_k) -> item names``, best first.
        description: The model description (the shared ``Args:`` section is appended).
        text: Output sentence with ``{items}`` for the top three.
    """

    def recommend(category: str, dialogue_context: str, top_k: int = 50) -> dict[str, Any]:
        items = rank(dialogue_context, top_k)
        return {"items": items, "text": text.format(items=", ".join(items[:3]))}

    recommend.__doc__ = description.rstrip() + "\n" + RECOMMENDER_ARGS
    return expert_tool(recommend, "recommendation", name=name)


def subtask_of(tool: BaseTool) -> str | None:
    """The sub-task a tool declares in its metadata."""
    return (tool.metadata or {}).get("subtask")


_REGISTRY: list[BaseTool] = []


def register_expert(tool: BaseTool) -> None:
    """Make ``tool`` a candidate expert of every graph from now on (no prompt edit needed).

    Raises:
        ValueError: The tool declares no sub-task in ``metadata["subtask"]``.
    """
    if not subtask_of(tool):
        raise ValueError(f"expert {tool.name!r} declares no sub-task: set tool.metadata = {{'subtask': ...}}")
    unregister_expert(tool.name)
    _REGISTRY.append(tool)


def unregister_expert(name: str) -> None:
    """Forget a registered expert."""
    _REGISTRY[:] = [t for t in _REGISTRY if t.name != name]


def registered_experts() -> list[BaseTool]:
    """Experts registered with :func:`register_expert`."""
    return list(_REGISTRY)
