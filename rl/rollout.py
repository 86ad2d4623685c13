"""Rollouts of the graph with the policy LLM, and the policy's log-probability of a trajectory.

log P(S | theta) sums over the trajectory: a constrained choice (detection, matching) contributes
the log-probability of the chosen option normalised over the allowed options; the response
contributes the sum of its token log-probabilities (after any forced prefix), unless the graph
discarded it for the template fallback. Skipped stages and expert runs contribute nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from langchain_core.messages import HumanMessage

from agent.context import Context
from agent.llm import LocalHFChatModel
from agent.state import LLMCall
from agent.text import context_messages
from crsdata.schema import RecSample


def rollout(graph: Any, sample: RecSample, ctx: Context) -> dict[str, Any]:
    """Run the graph on a sample's context (no gradients); return the final state."""
    with torch.no_grad():
        return dict(graph.invoke({"messages": context_messages(sample.context)}, context=ctx))


def executed_ranking(state: dict[str, Any]) -> list[str]:
    """The recommendation the graph executed (empty when it chose another sub-task)."""
    if (state.get("subtask") or {}).get("name") != "recommendation":
        return []
    return list((state.get("expert_output") or {}).get("items", []))


def trajectory_logprob(policy: LocalHFChatModel, trajectory: list[LLMCall]) -> torch.Tensor:
    """Differentiable log P(S | theta) of a recorded trajectory."""
    total = torch.zeros(())
    for rec in trajectory:
        if rec.get("method") == "constrained" and rec.get("options") and rec.get("parsed") in rec["options"]:
            suffix = '"}' if rec.get("stage") in ("detection", "matching") else ""
            lp = policy.choice_logprobs([HumanMessage(rec["prompt"])], rec["options"], prefix=rec.get("prefix", ""), suffix=suffix)
            total = total + lp[rec["options"].index(rec["parsed"])]
        elif rec.get("stage") == "response" and rec.get("method") == "generated" and rec.get("completion") and not rec.get("fallback"):
            # a completion the graph discarded (template fallback) was not the answer: it earns no credit or blame
            total = total + policy.completion_logprob([HumanMessage(rec["prompt"])], rec["completion"], prefix=rec.get("prefix", ""))
    return total
