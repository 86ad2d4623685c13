"""The whole recipe: SFT, RLPF, calibration (:func:`train_manager`), and the cross-fitted guard on the
learned matching (:func:`guard_matching`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from agent.manager import MATCH_FIX, ManagerHead
from crsdata.metrics import compare_paired, group_folds
from rl.manager.calibration import calibrate_blend, calibrate_detection
from rl.manager.config import ManagerConfig
from rl.manager.data import REC, DecisionTensors, concat, subset
from rl.manager.policy import Decisions, best_expert, expected_reward, fixed, greedy, target_hits
from rl.manager.trainer import ManagerTrainer


def run_phase(head: ManagerHead, cfg: ManagerConfig, data: DecisionTensors, phase: str,
              reference: ManagerHead | None = None) -> ManagerTrainer:  # fmt: skip
    """Train ``head`` in place for one phase (``sft``: the config's ``sft_epochs`` at ``learning_rate``;
    ``rlpf``: ``rl_epochs`` at ``rl_learning_rate``); returns the trainer (its ``history``)."""
    import dataclasses
    import tempfile

    epochs, lr = (cfg.sft_epochs, cfg.learning_rate) if phase == "sft" else (cfg.rl_epochs, cfg.rl_learning_rate)
    scratch = tempfile.mkdtemp(prefix=f"llmcrs-{phase}-")  # the Trainer's own folder; nothing of it is kept
    args = dataclasses.replace(cfg, num_train_epochs=epochs, learning_rate=lr, output_dir=scratch)
    trainer = ManagerTrainer(head, args, data, phase, reference=reference)
    trainer.train()
    return trainer


def guard_matching(head: ManagerHead, sft: ManagerHead, cfg: ManagerConfig, data: DecisionTensors, folds: int = 5,
                   alpha: float = 0.05) -> dict[str, Any]:  # fmt: skip
    """Keep the learned matching only where it beats the best single expert on turns it did not learn from.

    RLPF learns matching from the validation split, a few hundred turns with targets (276 on ReDial),
    and a matching head can fit them turn by turn: on ReDial it sent 364 of 3,255 test recommendations
    to KBRD and lost .0065 HIT@10 to the reranker alone, while on validation it was above it. So the
    learning is cross-fitted: for each of ``folds`` folds of ``data`` (whole dialogues), a copy of
    ``sft`` (the SFT head before calibration) is trained by cached RLPF on the other folds, and its
    matching is scored on the held-out fold (every row recommended) against the expert that is best
    on the other folds. Unless the learned matching wins (one-sided paired t-test p < ``alpha``, as
    an expert must beat popularity to be offered), ``head``'s matching is fixed to the expert that is
    best on all of ``data`` (``match_bias``: +:data:`agent.manager.MATCH_FIX` on it, so neither
    greedy matching nor the blend picks another). The paper's model matching by descriptions is
    unchanged for prompted managers; this is a guard on what the trained head learned.

    Returns:
        The out-of-fold HIT@10 of each policy, the test's p-value and the expert fixed (``None``: learned).
    """
    import copy

    fold_of = group_folds([i.rsplit("/", 1)[0] for i in data.ids], folds)  # ids are dataset/split/dialogue/turn
    learned, constant = [], []
    for f in range(folds):
        inside = [i for i, g in enumerate(fold_of) if g != f]
        held = [i for i, g in enumerate(fold_of) if g == f]
        if not held or not inside:
            continue
        fit, out = subset(data, inside), subset(data, held)
        model = copy.deepcopy(sft).train()
        run_phase(model, cfg, fit, "rlpf", reference=copy.deepcopy(sft).eval())
        chosen = greedy(model, out, blend=False).expert
        learned += target_hits(Decisions(torch.full((len(out),), REC), chosen), out, 10).tolist()
        constant += target_hits(fixed(out, REC, best_expert(fit)), out, 10).tolist()
    test = compare_paired(learned, constant) if learned else None
    report: dict[str, Any] = {
        "matching_oof_hit@10_learned": sum(learned) / max(1, len(learned)),
        "matching_oof_hit@10_best_expert": sum(constant) / max(1, len(constant)),
        "matching_oof_rows": len(learned),
        "matching_oof_p": test.ttest_p if test else 1.0,
        "matching_fixed": None,
    }
    head.match_bias.zero_()
    if test is None or test.ttest_p >= alpha:
        best = best_expert(data)
        head.match_bias[best] = MATCH_FIX
        report["matching_fixed"] = data.experts[best]
    return report


@dataclass
class ManagerTraining:
    """What :func:`train_manager` gives back besides the trained head (trained in place)."""

    report: dict[str, Any]  # validation figures after each phase (``valid_<metric>_<phase>``) and the blend temperature
    history: list[dict[str, Any]]  # the trainer's logs, each tagged with its phase
    sft_reference: ManagerHead | None = None  # the head after SFT, uncalibrated: RLPF's KL reference, guard_matching's start
    sft_head: ManagerHead | None = None  # the head after SFT, calibrated like the full one: the w/o RL ablation

    def sft_report(self) -> dict[str, Any]:
        """The figures of the SFT-only head (what its saved ``manager.json`` may say about it)."""
        return {k: v for k, v in self.report.items() if k.endswith(("_init", "_sft", "_sft_calibrated"))}


def train_manager(head: ManagerHead, cfg: ManagerConfig, train: DecisionTensors, valid: DecisionTensors,
                  rl_data: DecisionTensors | None = None, sft_also: Sequence[DecisionTensors] = ()) -> ManagerTraining:  # fmt: skip
    """SFT on ``train`` (and ``sft_also``, other datasets' labelled decisions), then RLPF on ``rl_data``
    (default ``train``), then the detection offsets calibrated on ``valid``; returns the validation
    figures after each phase, the training history and the SFT-only head (calibrated the same way, for
    the w/o RL ablation).

    Why other datasets may join SFT: a sub-task is the same act in every movie corpus and the labels come
    from one function (:func:`agent.heuristics.label_turn`), while INSPIRED's own training split is 820
    turns. The offsets are still calibrated on this dataset's ``valid`` (its own mix of sub-tasks), and
    ``python -m eval manager`` then also holds the head to TF-IDF trained on the same pooled turns.

    Why RLPF may need other data than SFT: the learned experts' rankings of their own training
    dialogues are optimistic (KBRD has seen those targets), so a matching policy rewarded on them learns
    to over-trust the learned experts; rewards from dialogues no expert trained on are honest.
    """
    import copy

    sft_data = concat([train, *sft_also]) if sft_also else train
    head.fit_scaler(sft_data.llm)
    out = ManagerTraining(report={}, history=[])

    def measure(tag: str, model: ManagerHead) -> None:
        dec = greedy(model, valid)
        out.report[f"valid_accuracy_{tag}"] = float((dec.subtask == valid.labels).float().mean())
        out.report[f"valid_reward_{tag}"] = expected_reward(dec, valid)
        out.report[f"valid_hit@10_{tag}"] = float(target_hits(dec, valid, 10).mean())

    measure("init", head)
    for phase, epochs, data in (("sft", cfg.sft_epochs, sft_data), ("rlpf", cfg.rl_epochs, rl_data or train)):
        if epochs <= 0:
            continue
        out.history += run_phase(head, cfg, data, phase, reference=out.sft_reference if phase == "rlpf" else None).history
        measure(phase, head)
        if phase == "sft":
            out.sft_reference = copy.deepcopy(head).eval()
            sft = copy.deepcopy(head).eval()
            calibrate_detection(sft, valid, cfg.calibrate_on, min_labels=cfg.calibrate_min_labels)
            calibrate_blend(sft, valid)
            measure("sft_calibrated", sft)
            out.sft_head = sft
    calibrate_detection(head, valid, cfg.calibrate_on, min_labels=cfg.calibrate_min_labels)
    calibrate_blend(head, valid)
    out.report["blend_temperature"] = float(head.blend_temperature)
    measure("final", head)
    head.eval()
    return out
