"""The manager's training recipe (:class:`ManagerConfig`, YAML-driven through ``python -m rl.train``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rl.config import RLPFBaseConfig


@dataclass
class ManagerConfig(RLPFBaseConfig):
    """Training arguments of the decision head: transformers' plus RLPF's own. Defaults train in seconds on a CPU."""

    sft_epochs: float = field(default=20, metadata={"help": "epochs of supervised detection"})
    sft_also: str = field(
        default="",
        metadata={"help": "comma-separated other datasets whose training decisions join SFT (their sub-task labels only; "
                  "build them first with `python -m rl.decisions --dataset <name> --splits train`)"},
    )  # fmt: skip
    rl_epochs: float = field(default=20, metadata={"help": "epochs of RLPF on cached rewards (0: SFT only)"})
    rl_learning_rate: float = field(default=3e-4, metadata={"help": "learning rate of RLPF"})
    kl_beta: float = field(
        default=1.0, metadata={"help": "RLPF: weight of the KL divergence of detection from the SFT policy (TRL's beta)"}
    )
    rl_split: str = field(
        default="valid", metadata={"help": "split whose cached rewards RLPF learns from: valid (no expert trained on it) or train"}
    )
    calibrate_on: str = field(
        default="accuracy",
        metadata={"help": "what the detection offsets maximise on validation after training: accuracy (of the labels) or reward (RLPF's)"},
    )
    calibrate_min_labels: int = field(
        default=30,
        metadata={"help": "a sub-task's detection offset is calibrated only if validation labels it this often (else it stays 0)"},
    )
    sim_rounds: int = field(
        default=0, metadata={"help": "rounds of RLPF on simulated conversations after cached RLPF (0: none; rl.episodes)"}
    )
    sim_dialogues: int = field(default=100, metadata={"help": "simulated conversations per round (sampled from sim_split)"})
    sim_eval_dialogues: int = field(default=100, metadata={"help": "held-out conversations for the greedy success before and after"})
    sim_split: str = field(default="valid", metadata={"help": "split whose dialogues the simulated users start from"})
    sim_turns: int = field(default=5, metadata={"help": "system turns per simulated conversation"})
    sim_feedback: str = field(default="plain,reason", metadata={"help": "rejection styles of the simulated users, taking turns"})
    sim_curious: float = field(
        default=0.3, metadata={"help": "share of wrong recommendations the simulated user asks about (why, who) before rejecting"}
    )
    sim_opening: bool = field(default=False, metadata={"help": "also learn the opening decision of each conversation (a corpus turn)"})
    sim_learning_rate: float = field(default=1e-3, metadata={"help": "learning rate of RLPF on conversations"})
    sim_kl_beta: float = field(
        default=1.0, metadata={"help": "conversations: weight of the KL of detection from the corpus-trained head on corpus turns"}
    )
    sim_kl_split: str = field(
        default="train",
        metadata={"help": "corpus decisions the KL is taken on: train (with the templated why/who follow-ups) or valid"},
    )
    sim_batch_size: int = field(default=25, metadata={"help": "conversations per update"})
    sim_rollouts: int = field(
        default=1,
        metadata={"help": "conversations per dialogue in a round (sim_dialogues in all); above 1, each is compared with the mean of "
                  "the others of its dialogue (TRL's RLOO baseline) instead of the moving average"},
    )  # fmt: skip
    sim_branch: bool = field(
        default=False,
        metadata={"help": "play each dialogue greedily and again with one later turn's sub-task switched, and credit that decision "
                  "with the difference (rl.episodes.play_branches) instead of sampling whole conversations"},
    )  # fmt: skip
    hidden: int = field(default=256, metadata={"help": "width of the head's trunk"})
    dropout: float = field(default=0.2, metadata={"help": "dropout of the head"})
    per_device_train_batch_size: int = 64
    learning_rate: float = 1e-3
    logging_steps: float = 20
    disable_tqdm: bool = True
