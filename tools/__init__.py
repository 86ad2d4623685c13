"""Expert models as LangChain tools. A tool's name is its ID, its docstring the model description,
and ``metadata["subtask"]`` the sub-task it solves. Adding an expert is adding a tool."""

from __future__ import annotations

from langchain_core.tools import BaseTool

from tools.base import expert_tool, subtask_of
from tools.env import ExpertEnv, expert_env


def default_experts(dataset: str = "redial", root: str | None = None, catalog_url: str | None = None) -> list[BaseTool]:
    """The built-in experts of a dataset: at least one per sub-task."""
    from tools.detail import make_catalog_search
    from tools.elicitation import make_preference_elicitor
    from tools.explanation import make_explainer
    from tools.popularity import make_popularity_recommender

    env = expert_env(dataset, root, catalog_url)
    return [make_preference_elicitor(env), make_popularity_recommender(env), make_explainer(env), make_catalog_search(env)]


__all__ = ["ExpertEnv", "default_experts", "expert_env", "expert_tool", "subtask_of"]
