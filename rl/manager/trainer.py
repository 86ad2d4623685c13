"""The trainer: SFT of the detection head on the corpus labels, and RLPF (REINFORCE with a moving-average
baseline over sampled actions, equation 5) on the cached rewards."""

from __future__ import annotations

import statistics
from typing import Any

import torch
from transformers import Trainer

from agent.manager import SUBTASK_NAMES, ManagerHead
from rl.baseline import MovingAverageBaseline
from rl.manager.config import ManagerConfig
from rl.manager.data import REC, DecisionRows, DecisionTensors, collate_rows


def action_logprobs(det: torch.Tensor, match: torch.Tensor, actions: list[tuple[int, int]]) -> torch.Tensor:
    """log pi(a) of every joint action: log P(sub-task) (+ log P(expert | recommendation))."""
    ld, lm = torch.log_softmax(det, -1), torch.log_softmax(match, -1)
    cols = [ld[:, s] + (lm[:, e] if e >= 0 else 0.0) for s, e in actions]
    return torch.stack(cols, dim=-1)


def detection_kl(det: torch.Tensor, reference: ManagerHead, llm: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """KL(reference || current) of detection on these inputs, averaged: TRL's penalty for drifting from a reference policy."""
    with torch.no_grad():
        ref = torch.log_softmax(reference(llm, state)[0], -1)
    return (ref.exp() * (ref - torch.log_softmax(det, -1))).sum(-1).mean()


class ManagerTrainer(Trainer):
    """Supervised detection (``phase="sft"``) or RLPF over sampled joint actions (``phase="rlpf"``)."""

    def __init__(
        self, head: ManagerHead, args: ManagerConfig, data: DecisionTensors, phase: str, reference: ManagerHead | None = None
    ) -> None:
        if phase not in ("sft", "rlpf"):
            raise ValueError(f"phase must be sft or rlpf, got {phase!r}")
        self.data, self.phase, self.reference = data, phase, reference
        self.baseline = MovingAverageBaseline(args.baseline_beta)
        self.history: list[dict[str, Any]] = []
        self._pending: list[dict[str, float]] = []
        self._generator = torch.Generator().manual_seed(args.seed)
        super().__init__(
            model=head,
            args=args,
            train_dataset=DecisionRows(len(data)),
            data_collator=collate_rows,
        )

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        rows = inputs["rows"].cpu()
        d = self.data
        det, match = model(d.llm[rows], d.state[rows])
        if self.phase == "sft":
            loss = torch.nn.functional.cross_entropy(det, d.labels[rows])
            self._pending.append({"loss_sft": float(loss.detach()), "accuracy": float((det.argmax(-1) == d.labels[rows]).float().mean())})
        else:
            logp = action_logprobs(det, match, d.actions)
            with torch.no_grad():
                sampled = torch.multinomial(logp.exp(), 1, generator=self._generator).squeeze(1)  # sample, never greedy
            reward = d.rewards[rows, sampled]
            subtasks = [d.actions[int(a)][0] for a in sampled]
            # b(S) is kept per sub-task S of the context (its corpus label), not of the sampled action:
            # a baseline that depends on the action would bias the gradient and cancel the signal
            # that tells one sub-task from another.
            keys = [SUBTASK_NAMES[int(x)] for x in d.labels[rows]]
            base = torch.tensor([self.baseline.value(k) for k in keys])
            for k, r in zip(keys, reward.tolist(), strict=True):
                self.baseline.update(k, r)
            chosen = logp.gather(1, sampled[:, None]).squeeze(1)
            loss = -((reward - base) * chosen).mean()
            beta = float(getattr(self.args, "kl_beta", 0.0))
            if self.reference is not None and beta > 0:  # stay near the SFT detection, as TRL's KL penalty does
                loss = loss + beta * detection_kl(det, self.reference, d.llm[rows], d.state[rows])
            self._pending.append(
                {
                    "reward": float(reward.mean()),
                    "baseline": float(base.mean()),
                    "recommend_share": float((torch.tensor(subtasks) == REC).float().mean()),
                }
            )
        return (loss, {}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._pending:
            for key in self._pending[0]:
                logs[key] = statistics.mean(p[key] for p in self._pending)
            self._pending = []
        if "loss" in logs:
            self.history.append({"phase": self.phase, "step": self.state.global_step, **logs})
        super().log(logs, start_time)
