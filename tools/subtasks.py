"""The sub-tasks of the paper's Table 1, as data.

Each sub-task has a name, named arguments and an output type. The detection prompt shows them in
this schema; a detected sub-task is a :class:`SubTaskCall` (a schema instance). Experts declare
the sub-task they solve in their tool metadata (``{"subtask": <name>}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypedDict


@dataclass(frozen=True)
class SubTask:
    """A sub-task of the schema: ``name {arg, ...} -> output type``."""

    name: str
    args: tuple[str, ...]
    output_type: str
    goal: str

    def schema_line(self) -> str:
        """One line of the {Sub-Task Schema} slot."""
        return json.dumps({"name": self.name, "args": {a: "<" + a + ">" for a in self.args}, "output": self.output_type})


ELICITATION = "user preference elicitation"
RECOMMENDATION = "recommendation"
EXPLANATION = "explanation"
DETAIL_SEARCH = "item detail search"

SUBTASKS: dict[str, SubTask] = {
    t.name: t
    for t in (
        SubTask(ELICITATION, ("category", "dialogue context"), "text", "ask the user about their preferences for {category}"),
        SubTask(RECOMMENDATION, ("category", "dialogue context"), "item", "recommend a {category} that fits the user's preferences"),
        SubTask(EXPLANATION, ("item name", "dialogue context"), "text", "explain why {item name} suits the user"),
        SubTask(DETAIL_SEARCH, ("item name", "item attribute"), "text", "look up the {item attribute} of {item name}"),
    )
}
#: Tool argument names for the schema's argument names.
ARG_KEYS = {"category": "category", "dialogue context": "dialogue_context", "item name": "item_name", "item attribute": "item_attribute"}


class SubTaskCall(TypedDict):
    """A detected sub-task: a schema instance."""

    name: str
    args: dict[str, str]
    output_type: str


def make_call(name: str, args: dict[str, Any]) -> SubTaskCall:
    """Build a :class:`SubTaskCall`, keeping only the sub-task's own arguments (as strings).

    Raises:
        KeyError: Unknown sub-task name.
    """
    task = SUBTASKS[name]
    return SubTaskCall(name=name, args={a: str(args.get(a, "")) for a in task.args}, output_type=task.output_type)


def goal_text(call: SubTaskCall) -> str:
    """The {Sub-Task Goal} slot: the call in schema form and its goal in words."""
    task = SUBTASKS[call["name"]]
    shown = {k: (v if k != "dialogue context" else "<the dialogue above>") for k, v in call["args"].items()}
    goal = task.goal.format(**{a: call["args"].get(a) or a for a in task.args})
    return json.dumps({"name": call["name"], "args": shown, "output": call["output_type"]}) + f"\nGoal: {goal}."
