"""What a head decides on a split, and what it scores: greedy decisions, fixed baselines, the expected
cached reward and per-target HIT@k."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agent.manager import ManagerHead, blend_weights
from rl.manager.data import REC, DecisionTensors
from tools.fusion import fuse_rankings


@dataclass
class Decisions:
    """What a manager (or a baseline) chose on a split: a sub-task and an expert per row, and where the
    experts are blended, each expert's share ``[n, experts]`` (``None``: the chosen expert alone)."""

    subtask: torch.Tensor
    expert: torch.Tensor
    weights: torch.Tensor | None = None


def greedy(head: ManagerHead, data: DecisionTensors, blend: bool = True) -> Decisions:
    """The head's decisions as the graph makes them: the argmax sub-task, and the matching
    distribution's argmax expert, blended with the others by :func:`agent.manager.blend_weights` when
    the head's ``blend_temperature`` is above 0 (``blend=False``: the argmax expert alone)."""
    head.eval()
    with torch.no_grad():
        det, match = head(data.llm, data.state)
    temperature = float(head.blend_temperature) if blend else 0.0
    weights = blend_weights(torch.log_softmax(match, -1), temperature) if temperature > 0 else None
    return Decisions(det.argmax(-1), match.argmax(-1), weights)


def fixed(data: DecisionTensors, subtask: int, expert: int) -> Decisions:
    """The same decision on every row."""
    n = len(data)
    return Decisions(torch.full((n,), subtask), torch.full((n,), expert))


def best_expert(data: DecisionTensors, k: int = 10) -> int:
    """The expert with the highest HIT@``k`` on ``data``'s target rows when it recommends on every row."""
    return max(range(len(data.experts)), key=lambda e: float(target_hits(fixed(data, REC, e), data, k).mean()))


def expected_reward(decisions: Decisions, data: DecisionTensors) -> float:
    """Mean cached reward of the decisions."""
    idx = [data.actions.index((int(s), int(e) if int(s) == REC else -1)) for s, e in zip(decisions.subtask, decisions.expert, strict=True)]
    return float(data.rewards[torch.arange(len(data)), torch.tensor(idx)].mean())


def target_hits(decisions: Decisions, data: DecisionTensors, k: int) -> torch.Tensor:
    """Per (sample row, target) HIT@k of the decisions, CRSLab's rows (0 where the manager did not recommend)."""
    rows = torch.nonzero(data.is_sample).squeeze(1)
    out = []
    for n in rows.tolist():
        if decisions.weights is None:
            h = data.hits[k][n, int(decisions.expert[n])]
            h = h[~torch.isnan(h)]
        else:
            top = set(fuse_rankings(data.rankings[n], decisions.weights[n].tolist())[:k])
            h = torch.tensor([float(t in top) for t in data.targets[n]])
        out.append(h if int(decisions.subtask[n]) == REC else torch.zeros_like(h))
    return torch.cat(out) if out else torch.zeros(0)
