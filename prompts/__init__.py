"""The three prompts of the paper's Table 2 (plus the w/o-E prompt by which the LLM does a sub-task
itself, the compact decision prompt the trained manager reads, the compact response prompt the
fine-tuned reply adapter was trained on, and the simulated user of
``python -m eval simulate --simulator llm``) as package-data templates, rendered strictly.

Slots are written as in the paper: ``{Sub-Task List}``, ``{Sub-Task Schema}``,
``{Demonstrations}``, ``{Dialogue Context}``, ``{Sub-Task Goal}``, ``{[ID, Description]}``,
``{Sub-Task Name}``, ``{ID, Description}``, ``{Output}``. A slot name starts with a capital
letter (or ``[``), so JSON braces in a template are left alone. Rendering with a missing or an
unknown slot raises :class:`PromptError`; an explicit empty string is allowed (ablations use it).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

SLOT = re.compile(r"\{(\[?[A-Z][A-Za-z ,\-]*\]?)\}")
TEMPLATES = ("detection", "matching", "response", "reply", "llm_expert", "decision", "simulator")


class PromptError(KeyError):
    """A template was rendered with a missing or unknown slot."""

    def __str__(self) -> str:
        return str(self.args[0])


@cache
def template(name: str) -> str:
    """The raw text of template ``name`` (``detection``, ``matching`` or ``response``)."""
    if name not in TEMPLATES:
        raise PromptError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATES)}")
    return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def slots(name: str) -> list[str]:
    """The slot names of template ``name``, in order of first appearance."""
    return list(dict.fromkeys(SLOT.findall(template(name))))


def render(name: str, values: dict[str, str]) -> str:
    """Fill every slot of template ``name``.

    >>> render("response", {"Dialogue Context": "User: hi", "Sub-Task Name": "recommendation",
    ...     "ID, Description": "pop: popularity", "Output": "Heat (1995)"}).count("Heat (1995)")
    1

    Raises:
        PromptError: A slot of the template has no value, or a value names no slot.
    """
    wanted = set(slots(name))
    missing = sorted(wanted - values.keys())
    unknown = sorted(values.keys() - wanted)
    if missing or unknown:
        raise PromptError(f"prompt {name!r}: missing slots {missing}, unknown slots {unknown}")
    return SLOT.sub(lambda m: str(values[m.group(1)]), template(name))
