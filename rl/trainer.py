"""RLPF on TRL: REINFORCE with a moving-average baseline over graph rollouts.

Why a subclass of transformers' ``Trainer`` and not TRL's GRPO/RLOO: the paper's equation 5 is
grad J = mean_contexts grad log P(S|theta) * (R - b(S)) with one rollout per training context and a
moving-average baseline b(S) per sub-task. TRL's public trainers hard-wire other estimators
(GRPO normalises rewards within a group of generations of the same prompt; RLOO uses the
leave-one-out mean of k generations), and both generate plain text from a prompt dataset, while our
"completion" is a whole graph trajectory (detection, matching, response). So :class:`RLPFTrainer`
subclasses transformers' ``Trainer`` (the machinery every TRL trainer is built on: optimizer, scheduler,
logging, checkpoints; TRL's own base class is private) and implements the estimator in
``compute_loss``: loss = -(R - b(S)) * log P(S|theta), averaged over the batch, which is exactly the
negative of equation 5's per-context term.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from agent.context import Context
from agent.llm import LocalHFChatModel
from crsdata.schema import RecSample
from rl.baseline import MovingAverageBaseline
from rl.config import RLPFBaseConfig
from rl.reward import weighted_reward
from rl.rollout import executed_ranking, rollout, trajectory_logprob


@dataclass
class RLPFConfig(RLPFBaseConfig):
    """Trainer configuration: the TRL/transformers training arguments plus RLPF's own.

    Defaults suit a CPU: fp32, no gradient checkpointing, batch 1 (the paper's), Adam with weight decay.
    """

    source_length: int = field(default=1024, metadata={"help": "max prompt tokens (left-truncated)"})
    target_length: int = field(default=32, metadata={"help": "max response tokens"})
    n_demos: int = field(default=2, metadata={"help": "demonstrations in the detection prompt"})
    per_device_train_batch_size: int = 1
    learning_rate: float = 5e-5
    logging_steps: float = 1


class RLPFTrainer(Trainer):
    """REINFORCE with a per-sub-task moving-average baseline over LLMCRS graph rollouts."""

    def __init__(self, model: Any, args: RLPFConfig, train_dataset: Any, processing_class: Any, samples: dict[str, RecSample],
                 dataset: str = "redial", data_root: str | None = None) -> None:  # fmt: skip
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            data_collator=lambda feats: feats,  # type: ignore[arg-type,return-value]  # a batch is its samples
        )
        from agent.graph import build_crs_graph

        # the policy: the very weights being trained, behind the chat-model interface the graph uses;
        # no prefix cache, since the weights change every step
        self.policy = LocalHFChatModel(
            hf_model=model, hf_tokenizer=processing_class, model_name="policy", prefix_cache_size=0, max_prompt_tokens=args.source_length
        )
        self.graph = build_crs_graph(model=self.policy, dataset=dataset, data_root=data_root, n_demos=args.n_demos, manager="prompt")
        self.ctx = Context(max_new_tokens=args.target_length)
        self.samples = samples
        self.baseline = MovingAverageBaseline(args.baseline_beta)
        self.history: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []

    def score(self, sample: RecSample) -> tuple[float, dict[str, Any]]:
        """Roll out on one sample and compute its reward."""
        state = rollout(self.graph, sample, self.ctx)
        args: RLPFConfig = self.args  # type: ignore[assignment]
        funcs, weights = args.rewards()  # the config's reward functions and weights (default lam*HIT + (1-lam)*BLEU)
        reward = weighted_reward(funcs, weights, [None], [state.get("response") or ""], ranked=[executed_ranking(state)],
                                 targets=[sample.targets], references=[sample.response], k=args.hit_k)[0]  # fmt: skip
        return reward, state

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        """Roll out each context, then -(R - b(S)) * log P(S|theta), averaged (equation 5)."""
        terms = []
        for ex in inputs:
            sample = self.samples[ex["sample_id"]]
            model.eval()
            reward, state = self.score(sample)
            model.train()
            key = (state.get("subtask") or {}).get("name") or "none"
            b = self.baseline.value(key)
            self.baseline.update(key, reward)
            logp = trajectory_logprob(self.policy, state.get("trajectory", []))
            terms.append(-(reward - b) * logp)
            self._pending.append({"reward": reward, "baseline": b, "advantage": reward - b, "logp": float(logp.detach()), "subtask": key})
        loss = torch.stack(terms).mean()
        return (loss, {}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._pending:
            for key in ("reward", "baseline", "advantage", "logp"):
                logs[key] = statistics.mean(p[key] for p in self._pending)
            logs["recommend_share"] = statistics.mean(p["subtask"] == "recommendation" for p in self._pending)
            self._pending = []
        if "loss" in logs:
            self.history.append({"step": self.state.global_step, **logs})
        super().log(logs, start_time)


def mean_reward(trainer: RLPFTrainer, samples: list[RecSample]) -> dict[str, float]:
    """Mean reward (and its parts) of the current policy on held-out samples, no updates."""
    rewards, shares = [], []
    trainer.policy.hf_model.eval()
    trainer.policy.sample_choices = False
    try:
        for s in samples:
            r, state = trainer.score(s)
            rewards.append(r)
            shares.append((state.get("subtask") or {}).get("name") == "recommendation")
    finally:
        trainer.policy.sample_choices = True
    return {
        "mean_reward": statistics.mean(rewards) if rewards else 0.0,
        "recommend_share": statistics.mean(shares) if shares else 0.0,
        "n": float(len(rewards)),
    }


def write_logs(history: list[dict[str, Any]], out_dir: Path, prefix: str = "", title: str = "RLPF: reward per step") -> None:
    """``<prefix>rlpf_log.jsonl`` and the reward curve ``<prefix>reward_curve.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{prefix}rlpf_log.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history if "reward" in h]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, [h["reward"] for h in history if "reward" in h], label="reward", marker=".")
    ax.plot(steps, [h["baseline"] for h in history if "reward" in h], label="baseline b(S)")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}reward_curve.png", dpi=120)
    plt.close(fig)
