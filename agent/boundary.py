"""The graph's input boundary and its bounded memory.

*Input.* LangGraph coerces whatever arrives under ``messages`` (its input schema is not validated,
and a malformed dict can poison a thread's pending writes), so the messages reducer checks every
incoming message first: content must be text or standard content blocks, within
:data:`MAX_MESSAGE_CHARS`. A message that fails is replaced by an empty marker carrying the reason;
the ``admit`` node then removes the markers and ends the turn with the error, before any model runs,
leaving the thread's messages as they were. An input without new messages is refused the same way.

*Memory.* What each step stores must not grow with the thread: the messages kept in the state are a
window of the last :data:`MESSAGES_WINDOW`; older user utterances are folded into ``earlier`` (a
bounded running summary that the experts still read), and ``results`` keeps the last
:data:`RESULTS_WINDOW` turns (enough for "why that one?" and for never re-offering an item). The
whole transcript stays in the checkpoint history: ``python -m agent export --thread ID``.
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, RemoveMessage, convert_to_messages
from langgraph.graph.message import add_messages

MAX_MESSAGE_CHARS = 4000
MAX_INPUT_MESSAGES = 200
MESSAGES_WINDOW = 24
RESULTS_WINDOW = 5
EARLIER_CHARS = 1200
REJECTED = "llmcrs_rejected"
TEXT_BLOCKS = {"text"}
MEDIA_BLOCKS = {"image", "image_url", "file", "audio", "video"}


class InputError(ValueError):
    """Input the graph refuses; the message names the field and the limit."""


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InputError(f"{where}: content must be text or a list of content blocks, got {type(content).__name__}")
    parts = []
    for j, block in enumerate(content):
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type") if isinstance(block, dict) else None
        if kind in TEXT_BLOCKS and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind not in MEDIA_BLOCKS:
            raise InputError(
                f"{where}[{j}]: unsupported content block {block!r:.80}; send text or standard blocks ({{'type': 'text', 'text': ...}})"
            )
    return " ".join(parts)


def check_message(raw: Any, index: int) -> BaseMessage:
    """The message, or a marker holding why it is refused.

    >>> check_message({"role": "user", "content": "hi"}, 0).content
    'hi'
    >>> check_message({"foo": "bar"}, 1).additional_kwargs[REJECTED]
    "messages[1]: not a message (needs 'role' and 'content')"
    """
    if isinstance(raw, RemoveMessage):
        return raw
    where = f"messages[{index}]"
    try:
        msg = raw if isinstance(raw, BaseMessage) else convert_to_messages([raw])[0]
    except (ValueError, TypeError, KeyError, NotImplementedError):
        return _marker(f"{where}: not a message (needs 'role' and 'content')", None)
    try:
        text = _text_of(msg.content, f"{where}.content")
        if len(text) > MAX_MESSAGE_CHARS:
            raise InputError(f"{where}.content: {len(text)} characters, over the limit of {MAX_MESSAGE_CHARS}; send a shorter message")
    except InputError as exc:
        return _marker(str(exc), msg.id)
    return msg


def _marker(reason: str, msg_id: str | None) -> HumanMessage:
    return HumanMessage(content="", id=msg_id or str(uuid.uuid4()), additional_kwargs={REJECTED: reason})


def add_checked_messages(left: list[AnyMessage], right: Any) -> list[AnyMessage]:
    """``add_messages`` with every incoming message checked (see the module docstring)."""
    items = right if isinstance(right, list) else [right]
    if len(items) > MAX_INPUT_MESSAGES:
        items = [_marker(f"messages: {len(items)} messages in one input, over the limit of {MAX_INPUT_MESSAGES}", None)]
    return add_messages(left, [check_message(m, i) for i, m in enumerate(items)])  # type: ignore[arg-type,return-value]


def keep_recent_results(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append the turn's results and keep the last :data:`RESULTS_WINDOW`.

    >>> keep_recent_results([{"n": i} for i in range(5)], [{"n": 5}])[0]
    {'n': 1}
    """
    return [*(left or []), *(right or [])][-RESULTS_WINDOW:]


MEMORY_LIMIT = 500  # items offered / attributes asked a conversation remembers (a bound, not a window users reach)


def remember(left: list[str], right: list[str]) -> list[str]:
    """Add what a turn offered or asked to the conversation's memory: new entries only, the last
    :data:`MEMORY_LIMIT` kept.

    >>> remember(["Heat (1995)"], ["Heat (1995)", "Alien (1979)"])
    ['Heat (1995)', 'Alien (1979)']
    """
    out = list(left or [])
    out += [x for x in dict.fromkeys(right or []) if x not in out]
    return out[-MEMORY_LIMIT:]


def rejected(messages: list[AnyMessage]) -> list[AnyMessage]:
    """The refused-input markers among the messages."""
    return [m for m in messages if REJECTED in (m.additional_kwargs or {})]


def fold_earlier(earlier: str, evicted: list[AnyMessage]) -> str:
    """The running summary after ``evicted`` messages leave the window: the user's earlier words, bounded.

    >>> fold_earlier("", [HumanMessage("I love Heat (1995)")])
    'I love Heat (1995)'
    >>> len(fold_earlier("x" * 2000, [HumanMessage("more")])) <= EARLIER_CHARS
    True
    """
    said = [" ".join(str(m.content).split()) for m in evicted if m.type == "human" and str(m.content).strip()]
    text = " | ".join([x for x in (earlier, *said) if x])
    return text[-EARLIER_CHARS:]


def trim(messages: list[AnyMessage], earlier: str) -> dict[str, Any]:
    """The state update that keeps the last :data:`MESSAGES_WINDOW` messages (empty when within it)."""
    if len(messages) <= MESSAGES_WINDOW:
        return {}
    evicted = messages[:-MESSAGES_WINDOW]
    return {"messages": [RemoveMessage(id=m.id) for m in evicted if m.id], "earlier": fold_earlier(earlier, evicted)}
