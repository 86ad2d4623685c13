"""Calibration on validation: the detection offsets and the blend temperature."""

from __future__ import annotations

import torch

from agent.manager import ManagerHead, blend_weights
from rl.manager.data import REC, DecisionTensors
from rl.manager.policy import Decisions, expected_reward, target_hits

OFFSETS = tuple(i / 4 for i in range(-12, 13))


CALIBRATION_OBJECTIVES = ("accuracy", "reward")


def calibrate_detection(head: ManagerHead, data: DecisionTensors, objective: str = "accuracy", grid: tuple[float, ...] = OFFSETS,
                        min_labels: int = 0) -> float:  # fmt: skip
    """Set the detection head's per-sub-task logit offsets to maximise ``objective`` on ``data``
    (coordinate ascent over a grid, two sweeps): the usual recalibration of a classifier's priors on
    held-out data. Returns the objective reached.

    Args:
        head: The trained head; its ``det_bias`` is overwritten.
        data: Held-out decisions.
        objective: ``"accuracy"`` of the sub-task labels, or ``"reward"``: the mean cached RLPF reward of
            the greedy joint decision (the matching head's expert when it recommends). Accuracy alone
            undoes what RLPF learned where the labels call a rewarding recommendation "elicitation"
            (INSPIRED labels most of its recommendation turns so).
        grid: The offsets tried for each sub-task.
        min_labels: Sub-tasks that ``data`` labels fewer times keep offset 0. An offset fitted on a
            handful of labels only learns never to choose the sub-task: ReDial's validation split labels
            one turn explanation and twelve detail search, and accuracy offsets of -3 and -2 on them
            bought .0007 of test accuracy and lost "why that one?" and "Who is the director of that
            one?" in conversation.
    """
    if objective not in CALIBRATION_OBJECTIVES:
        raise ValueError(f"calibrate_on must be one of {', '.join(CALIBRATION_OBJECTIVES)}, not {objective!r}")
    head.eval()
    with torch.no_grad():
        det, match = head(data.llm, data.state)
    det = det - head.det_bias  # the raw logits
    experts = match.argmax(-1)
    bias = torch.zeros(det.shape[1])

    def score(b: torch.Tensor) -> float:
        subtask = (det + b).argmax(-1)
        if objective == "accuracy":
            return float((subtask == data.labels).float().mean())
        return expected_reward(Decisions(subtask, experts), data)

    counts = torch.bincount(data.labels, minlength=det.shape[1])
    tuned = [c for c in range(1, det.shape[1]) if int(counts[c]) >= min_labels]  # offsets are relative to the first sub-task
    best = score(bias)
    for _ in range(2):
        for c in tuned:
            for value in grid:
                trial = bias.clone()
                trial[c] = value
                if (got := score(trial)) > best + 1e-9:
                    best, bias = got, trial
    head.det_bias.copy_(bias)
    return best


BLEND_TEMPERATURES = (0.0, 0.5, 1.0, 2.0, 4.0)


def calibrate_blend(head: ManagerHead, data: DecisionTensors, grid: tuple[float, ...] = BLEND_TEMPERATURES, k: int = 10) -> float:
    """Set the head's ``blend_temperature`` to the value of ``grid`` whose blend of the experts' rankings
    (:func:`agent.manager.blend_weights`) reaches the highest HIT@``k`` on ``data``'s target rows, every
    row recommended; ties go to the lower temperature (0, one expert, is the paper's matching).
    Returns that HIT@k.

    Why blend: the matching head's choice of one expert per turn does not beat the best expert (a
    router fitted on the test split itself does not either), but the experts are complementary (the
    per-turn oracle is 44% above the best one); weighting their rankings by the head's confidence in
    each uses that, and 0 stays in the grid so that a head whose blend does not help keeps picking.
    """
    head.eval()
    with torch.no_grad():
        _, match = head(data.llm, data.state)
    logp = torch.log_softmax(match, -1)
    every = torch.full((len(data),), REC)
    best_t, best = 0.0, -1.0
    for t in grid:
        got = float(target_hits(Decisions(every, logp.argmax(-1), blend_weights(logp, t) if t > 0 else None), data, k).mean())
        if got > best + 1e-9:
            best_t, best = t, got
    head.blend_temperature.fill_(best_t)
    return best
