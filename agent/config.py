"""What a graph is built from, in one place (:class:`GraphConfig`): ``build_crs_graph``, ``Resources``, the
evaluation systems and every command line take it. A command's own arguments subclass it, so a new graph
option is one field here and every command parses it (``--model``, ``--dataset``, ``--manager``, ...).
Run-time knobs that need no rebuild live in :class:`agent.context.Context`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self

#: Who makes the manager's decisions: the trained decision head (default; an error naming the alternatives
#: when the model has no hidden states or the head is another model's, the rule with a warning when the
#: embedded model has no head for the dataset), the LLM prompted with the
#: paper's Table 2 prompts (capable chat models, the paper's ablations), or the rule alone.
MANAGERS = ("trained", "prompt", "rule")


@dataclass(frozen=True)
class Ablations:
    """The paper's ablation switches; every ``False`` removes one component.

    Attributes:
        schema: Schema-based instruction in the detection prompt (w/o SI when off).
        demonstrations: Demonstration-based instruction (w/o DI when off).
        summary: Summary-based response generation (w/o SG when off: the raw expert output).
        management: Sub-task management (w/o M when off: always the recommendation expert).
        experts: Expert models (w/o E when off: the LLM does each sub-task itself).
    """

    schema: bool = True
    demonstrations: bool = True
    summary: bool = True
    management: bool = True
    experts: bool = True

    NAMES = ("full", "wo_si", "wo_di", "wo_sg", "wo_m", "wo_e")

    @classmethod
    def named(cls, name: str) -> Ablations:
        """``full``, ``wo_si``, ``wo_di``, ``wo_sg``, ``wo_m`` or ``wo_e``."""
        flags = {"full": {}, "wo_si": {"schema": False}, "wo_di": {"demonstrations": False}, "wo_sg": {"summary": False},
                 "wo_m": {"management": False}, "wo_e": {"experts": False}}  # fmt: skip
        if name not in flags:
            raise ValueError(f"unknown ablation {name!r}; known: {', '.join(flags)}")
        return cls(**flags[name])


@dataclass
class GraphConfig:
    """How to build a CRS graph.

    >>> GraphConfig(dataset="opendialkg", n_demos=2).ablations
    Ablations(schema=True, demonstrations=True, summary=True, management=True, experts=True)
    >>> GraphConfig(manager="oracle")
    Traceback (most recent call last):
    ...
    ValueError: unknown manager 'oracle'; known: trained, prompt, rule
    """

    model: str | None = field(
        default=None,
        metadata={"help": "the LLM: embedded (default: SmolLM2-135M-Instruct), a folder, hf:<id>, hf-endpoint:<url>, openai:<model>@<url>"},
    )
    dataset: str = field(default="redial", metadata={"help": "a registered dataset: redial, opendialkg, opendialkg_books, inspired, ... (crsdata.registry)"})
    data_root: str | None = field(default=None, metadata={"help": "data directory (default: $LLMCRS_DATA_DIR, then ../shared/data)"})
    manager: str = field(
        default="trained",
        metadata={"help": "who decides: trained (a head on the LLM's hidden states), prompt (the LLM on the paper's prompts) or rule"},
    )
    ablation: str = field(
        default="full", metadata={"help": "full, wo_si, wo_di, wo_sg, wo_m, wo_e (eval's --systems name them per system)"}
    )
    n_demos: int = field(
        default=4, metadata={"aliases": ["--demos"], "help": "demonstrations in the detection prompt (the prompted manager)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the demonstration choice (and of a command's sampling)"})

    def __post_init__(self) -> None:
        if self.manager not in MANAGERS:
            raise ValueError(f"unknown manager {self.manager!r}; known: {', '.join(MANAGERS)}")
        if self.n_demos < 0:
            raise ValueError("n_demos must be >= 0")
        Ablations.named(self.ablation)  # an unknown name fails here, not at the first turn

    @property
    def ablations(self) -> Ablations:
        """The ablation switches :attr:`ablation` names."""
        return Ablations.named(self.ablation)

    @classmethod
    def of(cls, args: Any, **changes: Any) -> Self:
        """The graph options of a command's arguments (a subclass of this, or any object with these
        attributes), with ``changes``: the one way a command hands them on, never copied by hand."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(GraphConfig)} | changes)
