"""What a graph needs at run time, loaded lazily so that building a graph is instant: the manager
LLM, the expert tools, the dataset's expert environment and the demonstrations."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from agent.config import Ablations, GraphConfig
from agent.llm import load_chat_model
from agent.manager import HiddenStateModel, ManagerHead, TrainedManager, require_hidden_states, trained_manager
from agent.reply_adapter import use_reply_adapter
from tools.base import registered_experts, subtask_of
from tools.env import ExpertEnv, expert_env

if TYPE_CHECKING:
    from agent.deciders import Manager


class Resources:
    """Lazily loaded run-time resources of one graph."""

    def __init__(
        self,
        config: GraphConfig,
        model: BaseChatModel | None = None,
        tools: list[BaseTool] | None = None,
        ablations: Ablations | None = None,
        head: ManagerHead | None = None,
    ) -> None:
        """``config``: how to build the graph; ``model``: a ready chat model instead of ``config.model``'s spec;
        ``tools``: the experts (``None``: the dataset's defaults); ``ablations``: switches that no name gives
        (default: ``config.ablation``'s); ``head``: a decision head to decide with (RLPF on simulated
        conversations, :mod:`rl.episodes`, updates that very head in place between rounds)."""
        self.config = config
        self._head = head
        self._model_spec: str | BaseChatModel | None = model if model is not None else config.model
        self._tools = tools
        self.dataset, self.data_root, self.n_demos, self.seed = config.dataset, config.data_root, config.n_demos, config.seed
        self.ablations = ablations or config.ablations
        manager = "trained" if head is not None else config.manager
        # the paper's prompt ablations (w/o SI, w/o DI) ablate the prompted manager, so they imply it
        prompt_ablation = not (self.ablations.schema and self.ablations.demonstrations)
        self.manager_mode = "prompt" if prompt_ablation and manager == "trained" else manager
        if self.manager_mode == "trained" and self.ablations.management:
            require_hidden_states(self._model_spec)  # now, not at the first turn: an endpoint cannot serve the trained manager

    @cached_property
    def model(self) -> BaseChatModel:
        """The manager LLM, with the dataset's reply adapter when one fits it (:mod:`agent.reply_adapter`)."""
        model = load_chat_model(self._model_spec)
        use_reply_adapter(model, self.dataset)
        return model

    @cached_property
    def trained(self) -> TrainedManager | None:
        """The trained decision head (``manager="trained"``), or ``None``: then the rule decides (with a warning)."""
        if self.manager_mode != "trained":
            return None
        if self._head is not None:
            if not isinstance(self.model, HiddenStateModel):
                raise TypeError(f"a decision head reads a local model's hidden states; {type(self.model).__name__} has none")
            return TrainedManager(self._head, {"dataset": self.dataset, "model": self.model.model_name}, self.model, self.env)
        return trained_manager(self.dataset, self.model, self.env)

    @cached_property
    def manager(self) -> Manager:
        """Who takes the two decisions (:func:`agent.deciders.build_manager`), built on the first turn."""
        from agent.deciders import build_manager

        return build_manager(self)

    @property
    def decider(self) -> str:
        """Who takes the manager's decisions: ``trained`` (the decision head), ``prompt`` (the LLM on the
        paper's prompts) or ``rule`` (the deterministic fallback)."""
        if self.manager_mode == "trained":
            return "trained" if self.trained is not None else "rule"
        return self.manager_mode

    @cached_property
    def item_titles(self) -> frozenset[str]:
        """The catalog's item names in lower case, for :func:`crsdata.metrics.invented_titles` (built once)."""
        return frozenset(name.lower() for name in self.env.linker.names.values())

    @cached_property
    def env(self) -> ExpertEnv:
        """Catalog, entity linker and popularity of the dataset."""
        return expert_env(self.dataset, self.data_root)

    @cached_property
    def tools(self) -> list[BaseTool]:
        """The experts given at build time, else the dataset's default experts."""
        if self._tools is not None:
            return list(self._tools)
        from tools import default_experts

        return default_experts(self.dataset, self.data_root)

    def all_tools(self) -> list[BaseTool]:
        """Build-time experts plus any registered since (:func:`tools.base.register_expert`)."""
        names = {t.name for t in self.tools}
        return self.tools + [t for t in registered_experts() if t.name not in names]

    def candidates(self, subtask: str) -> list[BaseTool]:
        """Experts that declare ``subtask``, in registration order."""
        return [t for t in self.all_tools() if subtask_of(t) == subtask]

    def tool(self, name: str) -> BaseTool | None:
        """The expert with ID ``name``."""
        return next((t for t in self.all_tools() if t.name == name), None)

    @cached_property
    def demos(self) -> tuple[str, ...]:
        """Demonstrations for the detection prompt (none under w/o DI)."""
        if not self.ablations.demonstrations or self.n_demos <= 0:
            return ()
        from agent.demos import demonstrations

        return demonstrations(self.dataset, self.n_demos, self.seed, self.data_root)
