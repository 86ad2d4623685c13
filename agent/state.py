"""The one typed state of the CRS graph."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage

from agent.boundary import add_checked_messages, keep_recent_results, remember
from agent.manager import TurnFeatures
from tools.preferences import Preferences
from tools.subtasks import SubTaskCall


class LLMCall(TypedDict, total=False):
    """One record of the turn's trajectory: what a stage asked, got and decided.

    ``method`` is ``constrained`` (options scored by the LLM), ``parsed`` (free text parsed),
    ``generated`` (free response), ``skipped`` (no LLM call needed), ``tool`` (expert run), ``head`` (the
    trained manager), ``rule``, or ``validated`` (the trained manager's fixed expert is not offered: the offered
    one with the best validation HIT@10).
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
    blend: dict[str, float]
    sampled: bool
    fallback: bool
    attempts: list[dict[str, str]]
    error: str
    seconds: float
    preferences: Preferences
    grounding: dict[str, Any]  # the response's grounding check (agent.grounding.check)


class InputState(TypedDict):
    """What a turn takes: new messages (``{"role": "user", "content": "..."}`` or LangChain messages;
    content is text or standard content blocks). Checked at the boundary (:mod:`agent.boundary`)."""

    messages: Annotated[list[AnyMessage], add_checked_messages]


class State(TypedDict, total=False):
    """Everything one conversation carries.

    Attributes:
        messages: The recent dialogue: new messages are checked and appended; the state keeps the
            last :data:`agent.boundary.MESSAGES_WINDOW` (the checkpoint history keeps all).
        earlier: A bounded summary of the user's words that left the window.
        answered: Id of the last message when the previous turn ended (a turn needs a newer one).
        subtask: The detected sub-task as a schema instance.
        candidates: IDs of the experts that solve it.
        expert: The chosen expert's ID.
        blend: Each recommender's share when the trained manager blends their rankings (``None``: the
            chosen expert alone).
        expert_output: Its output (a dict with at least ``text``).
        summary: The structured summary handed to response generation.
        response: The final response text.
        trajectory: Every LLM call (and the expert run) of the current turn.
        results: The last turns' ``{subtask, expert, output}``, so that "why that one?" can refer
            to the item recommended before.
        offered: Every item this conversation recommended (the one shown first): never offered again.
        asked: Every attribute the preference elicitor asked about: never asked again, however long
            ago (the dialogue window forgets; this does not).
        preferences: What the user has stated so far (:class:`tools.preferences.Preferences`: liked and
            disliked items, genres and people, the year range, "like X" anchors, items seen or
            rejected), folded turn by turn, a later statement overriding an earlier one; every
            recommendation honours it (:func:`tools.preferences.stated_first`).
        decision_features: The trained manager's features of this turn (its LLM pass), computed at
            detection and read at matching; cleared when the turn ends. Carried by the run, never
            shared between runs.
        error: Why the turn could not run normally, if it could not.
    """

    messages: Annotated[list[AnyMessage], add_checked_messages]
    earlier: str
    answered: str | None
    subtask: SubTaskCall | None
    candidates: list[str]
    expert: str | None
    blend: dict[str, float] | None
    expert_output: dict[str, Any] | None
    summary: str | None
    response: str | None
    trajectory: list[LLMCall]
    results: Annotated[list[dict[str, Any]], keep_recent_results]
    offered: Annotated[list[str], remember]
    asked: Annotated[list[str], remember]
    preferences: Preferences
    decision_features: TurnFeatures | None
    error: str | None
