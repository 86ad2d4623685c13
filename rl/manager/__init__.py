"""SFT, then RLPF, of the manager's decision head (:mod:`agent.manager`) on cached decisions.

The paper's RLPF is REINFORCE with a moving-average baseline over the manager's decisions, with
reward R = lambda * HIT + (1 - lambda) * BLEU. Rolling the graph out per update costs about 18 s here,
so the rewards are cached instead: :mod:`rl.decisions` ran every expert once per training context, so
the reward of every action (a sub-task, and for recommendation an expert) is a table lookup. Actions
are *sampled* from the policy, the baseline b(S) is kept per sub-task, and an update costs
milliseconds. :class:`ManagerTrainer` subclasses transformers' ``Trainer`` (optimizer, scheduler, logging; what
TRL's trainers are built on) like :class:`rl.trainer.RLPFTrainer`; ``phase="sft"``
fits the detection head to the corpus labels by cross-entropy, ``phase="rlpf"`` is equation 5.

One module per concern: ``config`` (the recipe), ``data`` (cached decisions as tensors), ``trainer`` (SFT
and RLPF steps), ``policy`` (decisions and their scores), ``calibration`` (offsets and blend on
validation), ``fit`` (the whole recipe and the cross-fitted matching guard).
"""

from rl.manager.calibration import BLEND_TEMPERATURES, CALIBRATION_OBJECTIVES, OFFSETS, calibrate_blend, calibrate_detection
from rl.manager.config import ManagerConfig
from rl.manager.data import ELICIT, REC, DecisionRows, DecisionTensors, actions_of, collate_rows, concat, decision_tensors, subset
from rl.manager.fit import ManagerTraining, guard_matching, run_phase, train_manager
from rl.manager.policy import Decisions, best_expert, expected_reward, fixed, greedy, target_hits
from rl.manager.trainer import ManagerTrainer, action_logprobs, detection_kl

__all__ = [
    "BLEND_TEMPERATURES", "CALIBRATION_OBJECTIVES", "ELICIT", "OFFSETS", "REC", "DecisionRows", "DecisionTensors", "Decisions", "ManagerConfig",
    "ManagerTrainer", "ManagerTraining", "action_logprobs", "actions_of", "best_expert", "calibrate_blend", "calibrate_detection",
    "collate_rows", "concat", "decision_tensors", "detection_kl", "expected_reward", "fixed", "greedy", "guard_matching",
    "run_phase", "subset", "target_hits", "train_manager",
]  # fmt: skip
