"""Expert models as LangChain tools. A tool's name is its ID, its docstring the model description,
and ``metadata["subtask"]`` the sub-task it solves. Adding an expert is adding a tool."""

from __future__ import annotations

import warnings

from langchain_core.tools import BaseTool

from crsdata.paths import DataError
from tools.base import expert_tool, subtask_of
from tools.env import ExpertEnv, expert_env


def default_experts(
    dataset: str = "redial",
    root: str | None = None,
    catalog_url: str | None = None,
    learned: bool = True,
    validated_only: bool = True,
) -> list[BaseTool]:
    """The built-in experts of a dataset: one per sub-task, plus every learned recommender that has
    been trained (``python -m tools.train all --dataset <name>``) and beats the popularity floor.

    An untrained expert is skipped with a warning that names the train command. A trained one whose
    validation HIT@10 does not beat popularity (one-sided paired t-test, see
    :func:`tools.learned.floor_evidence`) is withheld with a warning giving the figures, so model
    matching never offers an expert that is worse than the floor; ``validated_only=False`` offers it
    anyway (to measure it, as ``python -m eval run --systems expert:<id>`` does)."""
    from tools.detail import make_catalog_search
    from tools.elicitation import make_preference_elicitor
    from tools.explanation import make_explainer
    from tools.learned import LEARNED_EXPERTS, CheckpointMissing, checkpoint_metrics, learned_module, offer_verdict
    from tools.popularity import make_popularity_recommender

    env = expert_env(dataset, root, catalog_url)
    experts = [make_preference_elicitor(env), make_popularity_recommender(env), make_explainer(env), make_catalog_search(env)]
    if learned:
        for name in LEARNED_EXPERTS:
            metrics = checkpoint_metrics(dataset, name)  # empty when untrained: make() then says how to train
            why = offer_verdict(name, dataset, metrics) if validated_only and metrics else None
            if why:  # decided before make(), so a withheld model is never loaded
                warnings.warn(why, stacklevel=2)
                continue
            try:
                experts.append(learned_module(name).make_tool(env))
            except CheckpointMissing as exc:
                warnings.warn(str(exc), stacklevel=2)
            except DataError:  # the dataset cannot have this expert (KBRD without a KG): nothing to train
                continue
    return experts


__all__ = ["ExpertEnv", "default_experts", "expert_env", "expert_tool", "subtask_of"]
