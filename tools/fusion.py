"""Blending the rankings of several recommendation experts: weighted reciprocal-rank fusion.

Used by the manager's execution stage when model matching blends experts by its matching
probabilities (:func:`agent.manager.blend_weights`). Reciprocal-rank fusion (Cormack, Clarke and
Buettcher, SIGIR 2009) needs no score calibration between experts, which KBRD's logits, popularity
counts and cosine similarities do not share. It is a few lines; a fusion library (ranx) would bring
numba and its own run/qrels types for them, so it is written here.
"""

from __future__ import annotations

from collections.abc import Sequence

RRF_C = 60  # Cormack et al.'s constant: a rank r contributes 1 / (60 + r)


def fuse_rankings(rankings: Sequence[Sequence[str]], weights: Sequence[float], c: int = RRF_C) -> list[str]:
    """Items ordered by ``sum_e weights[e] / (c + rank_e(item))`` (rank from 1); ties keep first appearance.

    Args:
        rankings: One ranked item list per expert, best first.
        weights: One non-negative weight per expert (an expert with weight 0 is ignored).
        c: The fusion constant; larger values flatten the advantage of the very top ranks.

    >>> fuse_rankings([["a", "b", "c"], ["b", "d"]], [1.0, 1.0])
    ['b', 'a', 'd', 'c']
    >>> fuse_rankings([["a", "b", "c"], ["b", "d"]], [1.0, 0.0])
    ['a', 'b', 'c']
    """
    if len(rankings) != len(weights):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    score: dict[str, float] = {}
    for ranked, w in zip(rankings, weights, strict=True):
        if w <= 0:
            continue
        for r, item in enumerate(ranked, start=1):
            score[item] = score.get(item, 0.0) + w / (c + r)
    return sorted(score, key=lambda item: -score[item])
