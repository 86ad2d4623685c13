"""Text between the chat and the graph: messages as dialogue turns and back, and the clean-up of what a
small model writes (one place, read by the response stage, the evaluation and the simulators)."""

from __future__ import annotations

import re
from collections.abc import Container

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage

from crsdata.metrics import invented_titles
from crsdata.schema import Role, Turn

SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
STOP = re.compile(r"\n\s*\n|\n?(?:User|Assistant|System)\s*:|<\|im_(?:start|end)\|>")


def offer(item: str, rest: str = "") -> str:
    """The recommendation sentence's frame. One place: the response stage writes it, and the cached decision
    data (:mod:`rl.decisions`) scores its BLEU rewards on it, so the two cannot drift apart.

    >>> offer("Heat (1995)"), offer("Heat (1995)", ", a crime movie")
    ('You might like Heat (1995).', 'You might like Heat (1995), a crime movie.')
    """
    return f"You might like {item}{rest}."


def dialogue_of(messages: list[AnyMessage]) -> list[tuple[Role, str]]:
    """User and assistant utterances of the message list (others are ignored)."""
    out: list[tuple[Role, str]] = []
    for m in messages:
        if m.type in ("human", "ai") and str(m.content).strip():
            out.append(("user" if m.type == "human" else "recommender", str(m.content)))
    return out


def context_messages(context: tuple[Turn, ...]) -> list[BaseMessage]:
    """The inverse of :func:`dialogue_of`: dialogue turns as chat messages (user -> human, recommender -> ai)."""
    return [HumanMessage(t.text) if t.role == "user" else AIMessage(t.text) for t in context]


def clean_response(text: str, prefix: str = "") -> str:
    """Cut what a small model adds after its message (a new dialogue line, a blank line, chat
    tokens); after a forced prefix keep one sentence of the continuation.

    >>> clean_response("Try Heat (1995).\\nUser: thanks")
    'Try Heat (1995).'
    >>> clean_response("It is tense. And long. And more.", "You might like Heat (1995). ")
    'You might like Heat (1995). It is tense.'
    >>> clean_response("#2087456  1999   1     1", "The Matrix (1999) year: 1999 ")
    'The Matrix (1999) year: 1999'
    """
    text = STOP.split(text, maxsplit=1)[0].strip()
    if prefix:
        first = SENTENCE_END.search(text)
        text = (text[: first.end()] if first else text).strip()
        if not prose(text):  # numbers, ids and symbols after a forced prefix: keep the prefix alone
            text = ""
        return f"{prefix.strip()} {text}".strip()
    return text


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, split after ".", "!" or "?" followed by a space.

    >>> sentences(" It is tense. Really? Yes! ")
    ['It is tense.', 'Really?', 'Yes!']
    """
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def without_invented_titles(text: str, known: Container[str]) -> tuple[str, list[str]]:
    """``text`` without its sentences that name a "Title (Year)" that is none of the ``known`` item
    names (lower case), and those titles. A 135M model continues "You might like X." with "You can also enjoy
    Iron Man (2009)" (the film is from 2008): a title that does not exist must never reach the user.

    >>> without_invented_titles("It is tense. Also try Black Panther (2019)! Enjoy.", {"black panther (2018)"})
    ('It is tense. Enjoy.', ['Also try Black Panther (2019)'])
    """
    kept, invented = [], []
    for sentence in sentences(text):
        named = invented_titles(sentence, known)
        invented += named
        if not named:
            kept.append(sentence)
    return " ".join(kept), invented


def prose(text: str) -> bool:
    """Whether a continuation reads as words: it starts with a letter and is mostly letters and spaces.

    >>> prose("It is a classic."), prose("#14586 - 1 1 1"), prose("")
    (True, False, False)
    """
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return bool(text) and text[0].isalpha() and letters >= 0.8 * len(text)
