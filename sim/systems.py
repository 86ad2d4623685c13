"""Systems under evaluation and training. Each sees only a sample's context (never its targets or response)
and returns a :class:`Prediction`.

* ``full``, ``wo_si``, ``wo_di``, ``wo_sg``, ``wo_m``, ``wo_e`` — the LLMCRS graph and its ablations.
* ``expert:<id>`` — one expert tool alone (recommendation experts rank items; others answer).
* ``llm_only`` — the LLM alone answers the dialogue; items it names are its recommendation.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.config import Ablations, GraphConfig
from agent.context import Context
from agent.grounding import check
from agent.llm import LocalHFChatModel
from agent.manager import ManagerHead
from agent.text import clean_response, context_messages
from crsdata.schema import RecSample
from tools.base import subtask_of
from tools.dialogue import format_turns

GRAPH_SYSTEMS = Ablations.NAMES


@dataclass
class Prediction:
    """What a system did on one sample."""

    ranked: list[str]
    response: str
    subtask: str | None = None
    expert: str | None = None
    fallbacks: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    trajectory: list[dict[str, Any]] = field(default_factory=list)  # the graph's decision records of the turn
    grounding: dict[str, Any] | None = None  # the reply's grounding check (agent.grounding), where the system wrote one


class System(Protocol):
    """Anything that predicts on a sample."""

    name: str

    def predict(self, sample: RecSample) -> Prediction:
        """Predict from ``sample.context`` only."""
        ...


@runtime_checkable
class Conversational(System, Protocol):
    """A system that holds a conversation with state, turn by turn (the graph systems)."""

    def session(self, sample: RecSample) -> Callable[[str | None], Prediction]:
        """A new conversation from ``sample``'s history; ``None`` asks the first answer, a string is the next user message."""
        ...


class GraphSystem:
    """The LLMCRS graph (or an ablation) as a system."""

    def __init__(
        self,
        name: str,
        config: GraphConfig,
        ctx: Context,
        model: BaseChatModel | None = None,
        label: str | None = None,
        head: ManagerHead | None = None,
    ) -> None:
        """``name``: the ablation (``full``, ``wo_m``, ...) of the graph ``config`` builds; ``model``: a ready
        chat model shared with other systems; ``head``: a decision head to decide with (:mod:`rl.episodes`)."""
        from agent.graph import build_crs_graph

        self.name = label or name
        self.ctx = ctx
        self._build = partial(build_crs_graph, model=model, ablations=name, manager=head, config=config)
        self.graph = self._build()  # one turn per sample, no checkpointer: nothing to write or forget
        self.memory = InMemorySaver()  # the threads of session()

    @cached_property
    def session_graph(self) -> Any:
        """The same graph with :attr:`memory` as its checkpointer, built on the first :meth:`session`."""
        return self._build(checkpointer=self.memory)

    def predict(self, sample: RecSample) -> Prediction:
        return self._prediction(self.graph.invoke({"messages": context_messages(sample.context)}, context=self.ctx))

    def session(self, sample: RecSample) -> Callable[[str | None], Prediction]:
        """A conversation on its own thread that starts from ``sample``'s history: call it with ``None``
        for the first answer, then with each next user message. The graph keeps its state between the
        turns (what it offered and asked), as it does for a user of the chat or the server."""
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}

        def turn(user_text: str | None) -> Prediction:
            messages = context_messages(sample.context) if user_text is None else [HumanMessage(user_text)]
            return self._prediction(self.session_graph.invoke({"messages": messages}, config, context=self.ctx))

        return turn

    @staticmethod
    def _prediction(out: dict[str, Any]) -> Prediction:
        traj = out.get("trajectory", [])
        ranked = (
            list((out.get("expert_output") or {}).get("items", [])) if (out.get("subtask") or {}).get("name") == "recommendation" else []
        )
        return Prediction(
            ranked=ranked,
            response=out.get("response") or "",
            subtask=(out.get("subtask") or {}).get("name"),
            expert=out.get("expert"),
            fallbacks={r["stage"]: bool(r.get("fallback")) for r in traj},
            seconds={r["stage"]: float(r.get("seconds", 0.0)) for r in traj},
            trajectory=list(traj),
            grounding=next((r["grounding"] for r in traj if r["stage"] == "response" and "grounding" in r), None),
        )


class ExpertSystem:
    """One expert tool on its own."""

    def __init__(self, tool: Any, top_k: int, linker: Any, category: str = "movie") -> None:
        self.name = f"expert:{tool.name}"
        self.tool, self.top_k, self.linker, self.category = tool, top_k, linker, category
        self.subtask = subtask_of(tool)

    def predict(self, sample: RecSample) -> Prediction:
        text = format_turns(sample.context)
        args: dict[str, Any] = {"category": self.category, "dialogue_context": text, "top_k": self.top_k}
        if "item_name" in self.tool.args:
            named = self.linker.link(text).items
            args["item_name"] = named[-1] if named else ""
        if "item_attribute" in self.tool.args:
            args["item_attribute"] = "plot"
        start = time.perf_counter()
        out = self.tool.invoke({k: v for k, v in args.items() if k in self.tool.args})
        secs = time.perf_counter() - start
        out = out if isinstance(out, dict) else {"text": str(out)}
        return Prediction(
            ranked=list(out.get("items", [])),
            response=str(out.get("text", "")),
            subtask=self.subtask,
            expert=self.tool.name,
            seconds={"execution": secs},
        )


class LLMOnlySystem:
    """The manager LLM alone: it answers the dialogue; the catalog items it names are its ranking."""

    PROMPT = "You are a movie recommender chatting with a user. Reply to the user's last message with one or two sentences; recommend a specific title when it fits.\n\n{dialogue}"

    def __init__(self, model: BaseChatModel, linker: Any, ctx: Context, facts_of: Callable[[str], list[str]] | None = None) -> None:
        self.name = "llm_only"
        self.model, self.linker, self.ctx = model, linker, ctx
        self.facts_of = facts_of  # an item's catalog facts, for the grounding check of the reply

    def predict(self, sample: RecSample) -> Prediction:
        start = time.perf_counter()
        kwargs: dict[str, Any] = (
            {"max_new_tokens": self.ctx.max_new_tokens, "stop": ["\n\n"]} if isinstance(self.model, LocalHFChatModel) else {}
        )
        prompt = self.PROMPT.format(dialogue=format_turns(sample.context[-self.ctx.max_context_turns :]))
        try:
            text = clean_response(str(self.model.invoke([HumanMessage(prompt)], **kwargs).content))
            failed = not text
        except Exception:  # counted as a fallback, like the graph's
            text, failed = "", True
        ranked = list(dict.fromkeys(self.linker.link(text).items))
        top = ranked[0] if ranked else None
        facts = self.facts_of(top) if top and self.facts_of else []
        # the LLM alone has no summary: only the dialogue supports what it says
        grounding = check(text, format_turns(sample.context), top, facts).as_row()
        return Prediction(
            ranked=ranked,
            response=text,
            subtask="recommendation",
            expert="llm",
            fallbacks={"response": failed},
            seconds={"response": time.perf_counter() - start},
            grounding=grounding,
        )
