"""LLMCRS: an LLM manages sub-task detection, model matching, execution and response generation."""

from agent.config import Ablations, GraphConfig
from agent.context import Context
from agent.state import State


def build_crs_graph(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`agent.graph.build_crs_graph` (imported lazily)."""
    from agent.graph import build_crs_graph as build

    return build(*args, **kwargs)


__all__ = ["Ablations", "Context", "GraphConfig", "State", "build_crs_graph"]
