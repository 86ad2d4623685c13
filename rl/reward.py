"""The RLPF reward: R = lambda * HIT + (1 - lambda) * BLEU (the paper's Section 4).

HIT is 1 when a target item is in the top ``k`` of the recommendation the graph executed, and 0
where no recommendation was made (a turn whose ground truth recommends items, answered with a
question, earns no HIT: the paper rewards recommending well, so choosing not to recommend when the
reference did is not rewarded). BLEU is CRSLab's BLEU-1 of the response against the reference.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from crsdata.metrics import bleu_crslab


def hit(ranked: Sequence[str], targets: Sequence[str], k: int = 10) -> float:
    """1.0 if any target is in the top ``k`` (0 for no recommendation).

    >>> hit(["a", "b"], ["b"], 1), hit(["a", "b"], ["b"], 2), hit([], ["b"])
    (0.0, 1.0, 0.0)
    """
    return float(any(t in ranked[:k] for t in targets))


def hit_reward(prompts: Sequence[Any], completions: Sequence[str], *, ranked: Sequence[Sequence[str]], targets: Sequence[Sequence[str]],
               k: int = 10, **kwargs: Any) -> list[float]:  # fmt: skip
    """TRL-style reward function: HIT@k of each completion's executed recommendation.

    >>> hit_reward(["c", "c"], ["", ""], ranked=[["a", "b"], []], targets=[["b"], ["b"]], k=2)
    [1.0, 0.0]
    """
    return [hit(r, t, k) for r, t in zip(ranked, targets, strict=True)]


def bleu_reward(prompts: Sequence[Any], completions: Sequence[str], *, references: Sequence[str], **kwargs: Any) -> list[float]:
    """TRL-style reward function: CRSLab's BLEU-1 of each completion against its reference.

    >>> bleu_reward(["c"], ["You might like Heat (1995)."], references=["You might like Heat (1995)."])
    [1.0]
    """
    return [bleu_crslab([c], [r], 1) for c, r in zip(completions, references, strict=True)]


def grounding_reward(prompts: Sequence[str], completions: Sequence[str], *, items: Sequence[Sequence[str]], facts: Sequence[Sequence[str]],
                     **kwargs: Any) -> list[float]:  # fmt: skip
    r"""TRL-style reward function: how grounded each reply is in its prompt (the turn's summary and window).
    -1 for a reply that claims anything the prompt does not support (:func:`agent.grounding.check`: a
    title, name or year it lacks, a streaming service, an award, a price, "find it here"); else, for a
    recommendation, .5 for naming its item and .5 more for one true fact of it beyond its title (a genre, a
    person, the reason); any other reply earns 1 for saying something.

    >>> p = ["Found: Heat (1995)\nAbout: a crime movie directed by Michael Mann"]
    >>> kw = {"items": [["Heat (1995)"]], "facts": [["crime", "Michael Mann"]]}
    >>> [grounding_reward(p, [c], **kw)[0] for c in ("Heat (1995) is a tense crime movie.", "Have you seen Heat (1995)?", "Watch Heat (1995) on Netflix!")]
    [1.0, 0.5, -1.0]
    """
    from agent.grounding import check

    out = []
    for prompt, completion, its, fs in zip(prompts, completions, items, facts, strict=True):
        found = check(completion, str(prompt), its[0] if its else None, fs)
        if not found.grounded:
            out.append(-1.0)
        elif its:
            out.append(0.5 * found.names_item + 0.5 * found.true_attribute)
        else:
            out.append(float(bool(completion.strip())))
    return out


RewardFunc = Callable[..., list[float]]


def weighted_reward(reward_funcs: Sequence[RewardFunc], reward_weights: Sequence[float], prompts: Sequence[Any],
                    completions: Sequence[str], **kwargs: Any) -> list[float]:  # fmt: skip
    """Sum of reward functions with weights (TRL's ``reward_funcs`` / ``reward_weights``).

    >>> weighted_reward([hit_reward, bleu_reward], [0.5, 0.5], ["c"], ["no"], ranked=[["b"]], targets=[["b"]], references=["yes"])
    [0.5]
    """
    if len(reward_funcs) != len(reward_weights):
        raise ValueError(f"{len(reward_funcs)} reward functions but {len(reward_weights)} weights")
    total = [0.0] * len(completions)
    for func, weight in zip(reward_funcs, reward_weights, strict=True):
        for i, value in enumerate(func(prompts, completions, **kwargs)):
            total[i] += weight * value
    return total


def crs_reward(prompts: Sequence[Any], completions: Sequence[str], *, ranked: Sequence[Sequence[str]], targets: Sequence[Sequence[str]],
               references: Sequence[str], lam: float = 0.5, k: int = 10, **kwargs: Any) -> list[float]:  # fmt: skip
    """The paper's reward, lambda * HIT@k + (1 - lambda) * BLEU-1, one per completion (the graph's final response).

    Args:
        prompts: The contexts (unused, as in TRL's signature).
        completions: The responses.
        ranked: The executed recommendation of each rollout (empty if none).
        targets: Ground-truth items of each turn.
        references: Reference responses.
        lam: Weight of HIT; ``1 - lam`` weighs BLEU.
        k: HIT cut-off.

    >>> crs_reward(["c"], ["You might like Heat (1995)."], ranked=[["Heat (1995)"]], targets=[["Heat (1995)"]],
    ...            references=["You might like Heat (1995)."], lam=0.5)
    [1.0]
    >>> crs_reward(["c"], ["no"], ranked=[[]], targets=[["Heat (1995)"]], references=["yes"], lam=0.7)
    [0.0]
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    return weighted_reward([hit_reward, bleu_reward], [lam, 1 - lam], prompts, completions, ranked=ranked, targets=targets,
                           references=references, k=k)  # fmt: skip


#: Reward functions by name, for configs (``reward_funcs: hit,bleu``); any other is a dotted path.
REWARD_FUNCS: dict[str, RewardFunc] = {"hit": hit_reward, "bleu": bleu_reward, "grounding": grounding_reward}


def resolve_rewards(reward_funcs: str, reward_weights: str | None = None, lam: float = 0.5) -> tuple[list[RewardFunc], list[float]]:
    """The reward functions and weights a config names, as TRL's scripts resolve ``reward_funcs``: a name of
    :data:`REWARD_FUNCS` or a dotted path (``package.module.function``) to ``f(prompts, completions, **kwargs)
    -> list[float]``. Without weights, ``hit,bleu`` is weighted ``lam, 1 - lam`` (the paper's reward) and
    anything else 1.0 each (TRL's default).

    >>> funcs, weights = resolve_rewards("hit,bleu", None, 0.7)
    >>> [f.__name__ for f in funcs], weights
    (['hit_reward', 'bleu_reward'], [0.7, 0.30000000000000004])
    >>> resolve_rewards("rl.reward.bleu_reward", "2")[1]
    [2.0]

    Raises:
        ValueError: An unknown name, a path that is no function, or as many weights as functions not given.
    """
    names = [n.strip() for n in reward_funcs.split(",") if n.strip()]
    funcs = []
    for name in names:
        if name in REWARD_FUNCS:
            funcs.append(REWARD_FUNCS[name])
            continue
        module, _, attr = name.replace(":", ".").rpartition(".")
        try:
            func = getattr(importlib.import_module(module), attr) if module else None
        except ImportError as exc:
            raise ValueError(f"reward function {name!r}: {exc}") from exc
        if not callable(func):
            raise ValueError(f"unknown reward function {name!r}: a name of {', '.join(REWARD_FUNCS)} or a dotted path to a function")
        funcs.append(func)
    if reward_weights:
        weights = [float(w) for w in reward_weights.split(",") if w.strip()]
    elif names == ["hit", "bleu"] and not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    else:
        weights = [lam, 1 - lam] if names == ["hit", "bleu"] else [1.0] * len(funcs)
    if len(weights) != len(funcs) or not funcs:
        raise ValueError(f"{len(funcs)} reward functions ({reward_funcs!r}) but {len(weights)} weights ({reward_weights!r})")
    return funcs, weights
