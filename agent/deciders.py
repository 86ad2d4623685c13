"""Who takes the manager's two decisions, behind one protocol (:class:`Manager`): which sub-task a turn asks
for (detection) and which expert answers it (matching).

* :class:`HeadManager`: the trained decision head on the LLM's hidden states (:mod:`agent.manager`).
* :class:`PromptManager`: the LLM on the paper's Table 2 prompts #1 and #2 (:mod:`prompts`).
* :class:`RuleManager`: the deterministic rule (:func:`agent.heuristics.heuristic_subtask`), the default expert.
* :class:`Unmanaged`: the paper's w/o M ablation, always a recommendation by the default expert.

:func:`build_manager` picks one per graph, once (``Resources.manager``). What the graph does with a
decision afterwards (a stated wish, a repeated answer) is :mod:`agent.guards`' business, for every manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import torch
from langchain_core.tools import BaseTool

import prompts
from agent.decide import decide, pick
from agent.dialogue import decision_dialogue
from agent.heuristics import heuristic_subtask
from agent.manager import TurnFeatures, blend_weights
from agent.state import LLMCall, State
from crsdata.schema import Role
from tools.invoke import description_line
from tools.learned import validation_hit
from tools.subtasks import RECOMMENDATION, SUBTASKS, goal_text

if TYPE_CHECKING:
    from agent.resources import Resources


class Detection(NamedTuple):
    """A detection decision.

    Attributes:
        name: The sub-task.
        rec: Its trajectory record.
        distribution: The head's log-probabilities over the sub-tasks (the repeat guard's next choices), if any.
        args: The arguments a capable LLM filled in, if any (checked before use).
        features: The turn's LLM features, which matching reads again (the trained head only).
    """

    name: str
    rec: LLMCall
    distribution: torch.Tensor | None = None
    args: dict[str, Any] | None = None
    features: TurnFeatures | None = None


class Manager(Protocol):
    """The manager's two decisions."""

    def detect(self, state: State, dialogue: list[tuple[Role, str]], text: str) -> Detection:
        """Stage 1: the sub-task of the turn (``text``: the dialogue as the prompts show it)."""
        ...

    def match(self, state: State, tools: list[BaseTool]) -> tuple[str, LLMCall, dict[str, float] | None]:
        """Stage 2: the expert among ``tools`` (two or more), its record, and the blend shares, if any."""
        ...


def detection_prompt(res: Resources, dialogue_text: str) -> str:
    """Prompt #1 with the active ablations applied (an ablated slot is explicitly emptied)."""
    schema = "\n".join(t.schema_line() for t in SUBTASKS.values()) if res.ablations.schema else ""
    demos = "\n\n".join(res.demos) if res.demos else "(none)"
    return prompts.render(
        "detection",
        {"Sub-Task List": ", ".join(SUBTASKS), "Sub-Task Schema": schema, "Demonstrations": demos, "Dialogue Context": dialogue_text},
    )


def matching_prompt(state: State, candidates: list[BaseTool]) -> str:
    """Prompt #2: the sub-task goal and the candidates' [ID, Description] lines."""
    listing = "\n".join(f"[{t.name}, {description_line(t)}]" for t in candidates)
    return prompts.render("matching", {"Sub-Task Goal": goal_text(state["subtask"]), "[ID, Description]": listing})  # type: ignore[arg-type]


def head_choice(stage: str, text: str, options: list[str], logprobs: torch.Tensor, sample: bool) -> tuple[str, LLMCall]:
    """A decision of the trained manager: the argmax of the head's distribution (sampled during RLPF rollouts)."""
    index = pick(logprobs, sample)
    rec = LLMCall(stage=stage, method="head", prompt=text, options=list(options), logprobs=[round(float(x), 6) for x in logprobs],
                  parsed=options[index], sampled=sample, fallback=False)  # fmt: skip
    return options[index], rec


def default_expert(tools: list[BaseTool], fallback: bool) -> tuple[str, LLMCall, None]:
    """The first candidate (each sub-task's default expert)."""
    expert = tools[0].name
    return expert, LLMCall(stage="matching", method="rule", parsed=expert, fallback=fallback, error="the default expert"), None


class HeadManager:
    """The trained decision head (``manager="trained"``); it reads ``res.trained``, which RLPF may update in place."""

    def __init__(self, res: Resources) -> None:
        self.res = res

    def _sampling(self) -> bool:
        return bool(getattr(self.res.model, "sample_choices", False))  # RLPF rollouts sample; serving takes the argmax

    def detect(self, state: State, dialogue: list[tuple[Role, str]], text: str) -> Detection:
        trained = self.res.trained
        assert trained is not None
        results = state.get("results", [])
        seen = decision_dialogue(state)
        features = trained.features(seen, results)  # for matching: the turn's own, not a shared cache
        det, _, decision = trained.distributions(seen, results, features)
        name, rec = head_choice("detection", decision, list(SUBTASKS), det, self._sampling())
        return Detection(name, rec, det, None, features)

    def match(self, state: State, tools: list[BaseTool]) -> tuple[str, LLMCall, dict[str, float] | None]:
        trained = self.res.trained
        assert trained is not None
        known = [t.name for t in tools if t.name in trained.head.experts]
        if not known:  # no candidate the head knows: the default expert
            return default_expert(tools, fallback=True)
        fixed = trained.head.fixed_expert
        if fixed is not None and fixed not in known:
            # The guard fixed an expert because the head's learned matching lost to it out of fold; where this graph
            # does not offer it (withheld here, or untrained), that learned matching is not trusted either: the
            # offered expert with the best validation HIT@10 takes its place.
            best = max((t for t in tools if t.name in known), key=validation_hit)
            why = f"{fixed}, which the matching guard fixed, is not offered: the offered expert with the best validation HIT@10"
            return best.name, LLMCall(stage="matching", method="validated", parsed=best.name, fallback=False, error=why), None
        _, match, decision = trained.distributions(decision_dialogue(state), state.get("results", []), state.get("decision_features"))
        lp = torch.log_softmax(match[[trained.head.experts.index(i) for i in known]], -1)
        sample = self._sampling()
        expert, rec = head_choice("matching", decision, known, lp, sample)
        temperature, blend = float(trained.head.blend_temperature), None
        if temperature > 0 and not sample:  # a sampled choice (RLPF rollouts) is executed alone: it is the action
            shares = {i: round(float(w), 4) for i, w in zip(known, blend_weights(lp, temperature), strict=True) if w > 0}
            if len(shares) > 1:
                rec["blend"] = blend = shares
        return expert, rec, blend


class PromptManager:
    """The LLM on the paper's prompts (``manager="prompt"``; the paper's w/o SI and w/o DI ablate it)."""

    def __init__(self, res: Resources) -> None:
        self.res = res

    def detect(self, state: State, dialogue: list[tuple[Role, str]], text: str) -> Detection:
        results, env = state.get("results", []), self.res.env
        prompt = detection_prompt(self.res, text)
        name, rec, obj = decide(
            self.res.model, "detection", prompt, list(SUBTASKS), "name", lambda: heuristic_subtask(dialogue, results, env)
        )
        args = obj.get("args") if obj and isinstance(obj.get("args"), dict) else None
        return Detection(name, rec, None, args)

    def match(self, state: State, tools: list[BaseTool]) -> tuple[str, LLMCall, dict[str, float] | None]:
        ids = [t.name for t in tools]
        expert, rec, _ = decide(self.res.model, "matching", matching_prompt(state, tools), ids, "id", lambda: ids[0])
        return expert, rec, None


class RuleManager:
    """The rule (``manager="rule"``, or the embedded model with no trained head for the dataset)."""

    def __init__(self, res: Resources) -> None:
        self.res = res

    def detect(self, state: State, dialogue: list[tuple[Role, str]], text: str) -> Detection:
        name = heuristic_subtask(dialogue, state.get("results", []), self.res.env)
        return Detection(
            name, LLMCall(stage="detection", method="rule", parsed=name, fallback=False, error="no trained manager: the rule decides")
        )

    def match(self, state: State, tools: list[BaseTool]) -> tuple[str, LLMCall, dict[str, float] | None]:
        return default_expert(tools, fallback=False)


class Unmanaged:
    """w/o M: no sub-task management; every turn is a recommendation by the default expert."""

    def detect(self, state: State, dialogue: list[tuple[Role, str]], text: str) -> Detection:
        rec = LLMCall(stage="detection", method="skipped", parsed=RECOMMENDATION, fallback=False, error="w/o M: sub-task management off")
        return Detection(RECOMMENDATION, rec)

    def match(self, state: State, tools: list[BaseTool]) -> tuple[str, LLMCall, dict[str, float] | None]:
        return default_expert(tools, fallback=False)


def build_manager(res: Resources) -> Manager:
    """The graph's manager, from its ablations and ``res.decider`` (which loads the trained head, or refuses the model)."""
    if not res.ablations.management:
        return Unmanaged()
    if res.decider == "trained":
        return HeadManager(res)
    if res.decider == "prompt":
        return PromptManager(res)
    return RuleManager(res)
