"""What both RLPF trainers configure alike: the reward (its functions and weights, TRL-style; lambda, HIT cut-off), the moving-average
baseline, and defaults that run on a CPU. A GPU run sets ``use_cpu: false`` and ``bf16: true`` in its YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from rl.reward import RewardFunc, resolve_rewards


@dataclass
class RLPFBaseConfig(TrainingArguments):
    """transformers' training arguments (TRL's trainers share them) plus RLPF's reward and baseline."""

    lam: float = field(default=0.5, metadata={"help": "lambda: weight of HIT in R = lambda*HIT + (1-lambda)*BLEU"})
    reward_funcs: str = field(
        default="hit,bleu",
        metadata={
            "help": "comma-separated reward functions: hit, bleu, or a dotted path to f(prompts, completions, **kwargs) -> list[float]"
        },
    )
    reward_weights: str | None = field(
        default=None, metadata={"help": "comma-separated weights (default: lam, 1-lam for hit,bleu; else 1 each)"}
    )
    hit_k: int = field(default=10, metadata={"help": "HIT cut-off of the reward"})
    baseline_beta: float = field(default=0.9, metadata={"help": "moving-average factor of the baseline b(S)"})
    logging_steps: float = 10  # TRL's default (transformers logs every 500 steps)
    remove_unused_columns: bool = False
    gradient_checkpointing: bool = False
    bf16: bool = False
    use_cpu: bool = True
    weight_decay: float = 0.01
    save_strategy: str = "no"

    def rewards(self) -> tuple[list[RewardFunc], list[float]]:
        """The reward functions and weights this run trains on (:func:`rl.reward.resolve_rewards`)."""
        return resolve_rewards(self.reward_funcs, self.reward_weights, self.lam)
