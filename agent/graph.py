"""The LLMCRS graph: four stages over one state.

``build_crs_graph()`` is what apps import; the module-level ``graph`` (built without a
checkpointer, as the LangGraph server brings its own) serves ``langgraph dev``. Building is
instant: the LLM, the experts and the data load on the first turn.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agent.config import Ablations, GraphConfig
from agent.context import Context
from agent.manager import ManagerHead
from agent.nodes import (
    admit_input,
    detect_subtask,
    execute_subtask,
    generate_response,
    match_expert,
    route_after_admission,
    route_after_detection,
)
from agent.resources import Resources
from agent.state import InputState, State


def build_crs_graph(
    model: str | BaseChatModel | None = None,
    tools: list[BaseTool] | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    n_demos: int | None = None,
    ablations: Ablations | str | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    seed: int | None = None,
    manager: str | ManagerHead | None = None,
    *,
    config: GraphConfig | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Build the compiled LLMCRS graph from a :class:`GraphConfig` (``config``; default: the embedded model,
    ReDial, the trained manager); the keyword arguments given override its fields.

    Args:
        model: The manager LLM: a chat model, or a spec for :func:`agent.llm.load_chat_model`
            (``None`` = the embedded SmolLM2-135M-Instruct; a folder, ``hf:<id>``,
            ``hf-endpoint:<url>``, ``openai:<model>@<url>``).
        tools: Expert tools (each declares ``metadata["subtask"]``); ``None`` = the dataset's
            default experts. Experts registered later with :func:`tools.base.register_expert`
            become candidates too.
        checkpointer: A LangGraph checkpointer for multi-turn memory (e.g. ``InMemorySaver``,
            ``SqliteSaver``); ``None`` for stateless use or a server that brings its own.
        n_demos: Demonstrations in the detection prompt (0 allowed).
        ablations: An :class:`Ablations` or one of ``full, wo_si, wo_di, wo_sg, wo_m, wo_e``.
        dataset: The dataset whose catalog, demonstrations and default experts are used.
        data_root: Data directory (default: ``$LLMCRS_DATA_DIR`` or ``../shared/data``).
        seed: Seed of the demonstration choice.
        manager: Who makes the two decisions: ``"trained"`` (the dataset's trained decision head on
            the LLM's hidden states, :mod:`agent.manager`; when none exists, a warning and the rule),
            ``"prompt"`` (the LLM on the paper's prompts; for capable chat models and the paper's
            ablations w/o SI and w/o DI, which imply it) or ``"rule"``; or a
            :class:`agent.manager.ManagerHead` to decide with (RLPF on simulated conversations trains
            one in place, :mod:`rl.episodes`).
        config: The graph's options in one object (what every command line parses).

    Returns:
        A compiled graph; invoke it with ``{"messages": [...]}`` and a ``Context``.
    """
    given: dict[str, Any] = {"model": model if isinstance(model, str) else None, "n_demos": n_demos, "dataset": dataset, "data_root": data_root,
             "seed": seed, "manager": manager if isinstance(manager, str) else None,
             "ablation": ablations if isinstance(ablations, str) else None}  # fmt: skip
    cfg = replace(config or GraphConfig(), **{k: v for k, v in given.items() if v is not None})
    res = Resources(cfg, model if isinstance(model, BaseChatModel) else None, tools,
                    ablations if isinstance(ablations, Ablations) else None, manager if isinstance(manager, ManagerHead) else None)  # fmt: skip

    def ctx(runtime: Runtime[Context]) -> Context:
        return runtime.context if isinstance(runtime.context, Context) else Context()

    def detect(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return detect_subtask(state, ctx(runtime), res)

    def match(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return match_expert(state, ctx(runtime), res)

    def execute(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return execute_subtask(state, ctx(runtime), res)

    def respond(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return generate_response(state, ctx(runtime), res)

    builder = StateGraph(State, input_schema=InputState, context_schema=Context)
    builder.add_node("admit", admit_input)
    builder.add_node("detect", detect)
    builder.add_node("match", match)
    builder.add_node("execute", execute)
    builder.add_node("respond", respond)
    builder.add_edge(START, "admit")
    builder.add_conditional_edges("admit", route_after_admission, {"detect": "detect", "end": END})
    builder.add_conditional_edges("detect", route_after_detection, ["match", "execute", "respond"])
    builder.add_edge("match", "execute")
    builder.add_edge("execute", "respond")
    builder.add_edge("respond", END)
    graph = builder.compile(checkpointer=checkpointer, name="llmcrs")
    graph.resources = res  # type: ignore[attr-defined]  # for evaluation and RLPF: the same model and experts
    return graph


# The server's graph: `python -m agent serve --model M --manager P --dataset X` sets these (so does a
# langgraph.json "env"); unset, the embedded model with its trained manager on ReDial.
graph = build_crs_graph(
    model=os.environ.get("LLMCRS_MODEL") or None,
    dataset=os.environ.get("LLMCRS_DATASET", "redial"),
    manager=os.environ.get("LLMCRS_MANAGER", "trained"),
)
