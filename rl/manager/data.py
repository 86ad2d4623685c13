"""The cached decisions as tensors: one row per training context, the reward of every action a table lookup
(built from :mod:`rl.decisions`); rows for the trainer; subsets and concatenations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agent.manager import SUBTASK_NAMES
from rl.reward import RewardFunc, bleu_reward, hit_reward, weighted_reward
from tools.subtasks import ELICITATION, RECOMMENDATION

REC = SUBTASK_NAMES.index(RECOMMENDATION)
ELICIT = SUBTASK_NAMES.index(ELICITATION)


@dataclass
class DecisionTensors:
    """One split's decisions as tensors. Actions: every sub-task but recommendation, then recommendation with each expert."""

    ids: list[str]
    llm: torch.Tensor
    state: torch.Tensor
    labels: torch.Tensor
    rewards: torch.Tensor  # [n, actions]
    hits: dict[int, torch.Tensor]  # k -> [n, experts, max targets] per-target HIT, padded with NaN
    experts: list[str]
    actions: list[tuple[int, int]]  # (sub-task index, expert index or -1)
    is_sample: torch.Tensor
    rankings: list[list[list[str]]]  # [n][experts]: each expert's cached top-50 (empty where no targets)
    targets: list[list[str]]  # [n]: the distinct target items

    def __len__(self) -> int:
        return len(self.ids)


def actions_of(experts: list[str]) -> list[tuple[int, int]]:
    """The joint actions of detection and matching."""
    return [(i, -1) for i in range(len(SUBTASK_NAMES)) if i != REC] + [(REC, e) for e in range(len(experts))]


def decision_tensors(
    rows: list[dict[str, Any]],
    feats: dict[str, Any],
    experts: list[str],
    lam: float = 0.5,
    k: int = 10,
    rewards: tuple[list[RewardFunc], list[float]] | None = None,
) -> DecisionTensors:
    """Align decision rows with their cached features and tabulate every action's reward (``rewards``: the
    functions and weights, :meth:`rl.config.RLPFBaseConfig.rewards`; default the paper's, lam*HIT + (1-lam)*BLEU)."""
    index = {i: n for n, i in enumerate(feats["ids"])}
    missing = [r["id"] for r in rows if r["id"] not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} decision rows have no cached features (first: {missing[0]}); rebuild with `python -m rl.decisions --force true`"
        )
    order = torch.tensor([index[r["id"]] for r in rows], dtype=torch.long)
    actions = actions_of(experts)
    completions, ranked, targets, refs = [], [], [], []
    for r in rows:
        for s, e in actions:
            key = f"{RECOMMENDATION}:{experts[e]}" if e >= 0 else SUBTASK_NAMES[s]
            completions.append(r["responses"].get(key, ""))
            ranked.append(r["rankings"].get(experts[e], []) if e >= 0 else [])
            targets.append(r["targets"])
            refs.append(r["reference"])
    funcs, weights = rewards or ([hit_reward, bleu_reward], [lam, 1 - lam])
    flat = weighted_reward(funcs, weights, [None] * len(completions), completions, ranked=ranked, targets=targets, references=refs, k=k)
    width = max([len(dict.fromkeys(r["targets"])) for r in rows] + [1])
    hits = {}
    for kk in (10, 50):
        t = torch.full((len(rows), len(experts), width), float("nan"))
        for n, r in enumerate(rows):
            for e, name in enumerate(experts):
                rank = r["rankings"].get(name, [])
                for j, tgt in enumerate(dict.fromkeys(r["targets"])):
                    t[n, e, j] = float(tgt in rank[:kk])
        hits[kk] = t
    return DecisionTensors(
        ids=[r["id"] for r in rows],
        llm=feats["llm"][order].float(),
        state=feats["state"][order].float(),
        labels=torch.tensor([SUBTASK_NAMES.index(r["label"]) for r in rows]),
        rewards=torch.tensor(flat).view(len(rows), len(actions)),
        hits=hits,
        experts=experts,
        actions=actions,
        is_sample=torch.tensor([bool(r["is_sample"]) for r in rows]),
        rankings=[[list(r["rankings"].get(name, [])) for name in experts] for r in rows],
        targets=[list(dict.fromkeys(r["targets"])) for r in rows],
    )


class DecisionRows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, int]:
        return {"row": i}


def collate_rows(feats: list[dict[str, int]]) -> dict[str, torch.Tensor]:
    """The batch of a :class:`DecisionRows` dataset: the row indices, as a tensor."""
    return {"rows": torch.tensor([f["row"] for f in feats])}


def subset(data: DecisionTensors, rows: list[int]) -> DecisionTensors:
    """The decisions of ``rows`` only."""
    index = torch.tensor(rows, dtype=torch.long)
    return DecisionTensors(
        ids=[data.ids[i] for i in rows], llm=data.llm[index], state=data.state[index], labels=data.labels[index],
        rewards=data.rewards[index], hits={k: v[index] for k, v in data.hits.items()}, experts=data.experts,
        actions=data.actions, is_sample=data.is_sample[index], rankings=[data.rankings[i] for i in rows],
        targets=[data.targets[i] for i in rows],
    )  # fmt: skip


def concat(parts: list[DecisionTensors]) -> DecisionTensors:
    """The decisions of ``parts`` one after another (they must offer the same experts)."""
    if len({tuple(p.experts) for p in parts}) != 1:
        raise ValueError(f"decisions of different experts cannot be joined: {[p.experts for p in parts]}")
    width = max(next(iter(p.hits.values())).shape[-1] for p in parts)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=float("nan"))

    return DecisionTensors(
        ids=[i for p in parts for i in p.ids], llm=torch.cat([p.llm for p in parts]), state=torch.cat([p.state for p in parts]),
        labels=torch.cat([p.labels for p in parts]), rewards=torch.cat([p.rewards for p in parts]),
        hits={k: torch.cat([pad(p.hits[k]) for p in parts]) for k in parts[0].hits}, experts=parts[0].experts,
        actions=parts[0].actions, is_sample=torch.cat([p.is_sample for p in parts]),
        rankings=[r for p in parts for r in p.rankings], targets=[t for p in parts for t in p.targets],
    )  # fmt: skip
