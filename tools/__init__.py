"""Expert models as LangChain tools. A tool's name is its ID, its docstring the model description,
and ``metadata["subtask"]`` the sub-task it solves. Adding an expert is adding a tool."""

from __future__ import annotations

import warnings

from langchain_core.tools import BaseTool

from tools.base import expert_tool, subtask_of
from tools.env import ExpertEnv, expert_env


def default_experts(
    dataset: str = "redial", root: str | None = None, catalog_url: str | None = None, learned: bool = True
) -> list[BaseTool]:
    """The built-in experts of a dataset: one per sub-task, plus every learned recommender that has
    been trained (``python -m tools.train all --dataset <name>``); untrained ones are skipped with a
    warning that names the train command."""
    from tools.detail import make_catalog_search
    from tools.elicitation import make_preference_elicitor
    from tools.explanation import make_explainer
    from tools.kbrd import make_kbrd_recommender
    from tools.learned import CheckpointMissing
    from tools.popularity import make_popularity_recommender
    from tools.retriever import make_text_retriever
    from tools.sasrec import make_sasrec_recommender

    env = expert_env(dataset, root, catalog_url)
    experts = [make_preference_elicitor(env), make_popularity_recommender(env), make_explainer(env), make_catalog_search(env)]
    if learned:
        for make in (make_kbrd_recommender, make_sasrec_recommender, make_text_retriever):
            try:
                experts.append(make(env))
            except CheckpointMissing as exc:
                warnings.warn(str(exc), stacklevel=2)
    return experts


__all__ = ["ExpertEnv", "default_experts", "expert_env", "expert_tool", "subtask_of"]
