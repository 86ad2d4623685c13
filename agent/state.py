"""The one typed state of the CRS graph."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from agent.subtasks import SubTaskCall


class LLMCall(TypedDict, total=False):
    """One record of the turn's trajectory: what a stage asked, got and decided.

    ``method`` is ``constrained`` (options scored by the LLM), ``parsed`` (free text parsed),
    ``generated`` (free response), ``skipped`` (no LLM call needed) or ``tool`` (expert run).
    RLPF trains on these records; evaluation reads them.
    """

    stage: str
    method: str
    prompt: str
    completion: str
    prefix: str
    options: list[str]
    logprobs: list[float]
    parsed: Any
    sampled: bool
    fallback: bool
    attempts: list[dict[str, str]]
    error: str
    seconds: float


class State(TypedDict, total=False):
    """Everything one conversation carries.

    Attributes:
        messages: The dialogue (``add_messages`` appends).
        subtask: The detected sub-task as a schema instance.
        candidates: IDs of the experts that solve it.
        expert: The chosen expert's ID.
        expert_output: Its output (a dict with at least ``text``).
        summary: The structured summary handed to response generation.
        response: The final response text.
        trajectory: Every LLM call (and the expert run) of the current turn.
        results: Past turns' ``{subtask, expert, output}`` (appended), so that
            "why that one?" can refer to the item recommended before.
        error: Why the turn could not run normally, if it could not.
    """

    messages: Annotated[list[AnyMessage], add_messages]
    subtask: SubTaskCall | None
    candidates: list[str]
    expert: str | None
    expert_output: dict[str, Any] | None
    summary: str | None
    response: str | None
    trajectory: list[LLMCall]
    results: Annotated[list[dict[str, Any]], operator.add]
    error: str | None
