"""The plain-text dialogue format shared by the prompts and the experts.

One utterance a line, ``User: ...`` or ``Assistant: ...``. Experts receive the dialogue context in
this form, so a remote expert needs nothing but the text.
"""

from __future__ import annotations

from collections.abc import Iterable

from crsdata.schema import Role, Turn

PREFIX: dict[Role, str] = {"user": "User", "recommender": "Assistant"}
ROLE_OF = {v.lower(): k for k, v in PREFIX.items()} | {"system": "recommender", "seeker": "user", "recommender": "recommender"}


def format_dialogue(turns: Iterable[tuple[Role, str]]) -> str:
    """Render ``(role, text)`` pairs.

    >>> format_dialogue([("user", "hi"), ("recommender", "Hello!")])
    'User: hi\\nAssistant: Hello!'
    """
    return "\n".join(f"{PREFIX[role]}: {' '.join(text.split())}" for role, text in turns)


def format_turns(turns: Iterable[Turn]) -> str:
    """Render dataset turns."""
    return format_dialogue((t.role, t.text) for t in turns)


def parse_dialogue(text: str) -> list[tuple[Role, str]]:
    """Inverse of :func:`format_dialogue`; a line without a known prefix continues the previous utterance
    (or, first, is taken as the user's).

    >>> parse_dialogue("User: hi\\nAssistant: Hello!\\nmore")
    [('user', 'hi'), ('recommender', 'Hello! more')]
    """
    out: list[tuple[Role, str]] = []
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        role = ROLE_OF.get(head.strip().lower()) if sep else None
        if role is not None:
            out.append((role, rest.strip()))  # type: ignore[arg-type]
        elif line.strip():
            if out:
                out[-1] = (out[-1][0], f"{out[-1][1]} {line.strip()}".strip())
            else:
                out.append(("user", line.strip()))
    return out


def user_texts(text: str) -> list[str]:
    """The user's utterances of a formatted dialogue."""
    return [t for r, t in parse_dialogue(text) if r == "user"]
