"""The dialogue a stage reads from the state: the conversation (with what left the window), and the
trained manager's view of it, where the graph's own replies read as the sentences the head was trained on."""

from __future__ import annotations

from langchain_core.messages import AIMessage

from agent.context import Context
from agent.state import State
from agent.text import dialogue_of
from crsdata.schema import Role
from tools.dialogue import format_dialogue


def conversation(state: State) -> list[tuple[Role, str]]:
    """The dialogue of the state: the bounded summary of what left the window (as a user line), then the window."""
    earlier = state.get("earlier") or ""
    head: list[tuple[Role, str]] = [("user", f"(earlier) {earlier}")] if earlier else []
    return head + dialogue_of(state.get("messages", []))


#: Where a reply of the graph keeps the words the trained manager reads of it (``AIMessage.response_metadata``).
DECISION_VIEW = "llmcrs_decision_view"


def decision_dialogue(state: State) -> list[tuple[Role, str]]:
    """The dialogue as the trained manager reads it (:func:`conversation`), the graph's own replies as their
    decision view (:func:`decision_view`)."""
    messages = [
        AIMessage(m.response_metadata[DECISION_VIEW]) if m.type == "ai" and DECISION_VIEW in m.response_metadata else m
        for m in state.get("messages", [])
    ]
    return conversation({**state, "messages": messages})


def dialogue_text(state: State, ctx: Context) -> tuple[list[tuple[Role, str]], str]:
    """The dialogue, and the text the prompts show of it: its last ``ctx.max_context_turns`` utterances."""
    dialogue = conversation(state)
    return dialogue, format_dialogue(dialogue[-ctx.max_context_turns :])
