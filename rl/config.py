"""What both RLPF trainers configure alike: the reward (lambda, HIT cut-off), the moving-average
baseline, and defaults that run on a CPU. A GPU run sets ``use_cpu: false`` and ``bf16: true`` in its YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl.trainer.base_config import _BaseConfig


@dataclass
class RLPFBaseConfig(_BaseConfig):
    """TRL/transformers training arguments plus RLPF's reward and baseline."""

    lam: float = field(default=0.5, metadata={"help": "lambda: weight of HIT in R = lambda*HIT + (1-lambda)*BLEU"})
    hit_k: int = field(default=10, metadata={"help": "HIT cut-off of the reward"})
    baseline_beta: float = field(default=0.9, metadata={"help": "moving-average factor of the baseline b(S)"})
    remove_unused_columns: bool = False
    gradient_checkpointing: bool = False
    bf16: bool | None = False
    use_cpu: bool = True
    weight_decay: float = 0.01
    save_strategy: str = "no"
