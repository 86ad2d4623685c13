"""Typed records shared by every corpus loader.

One dialogue is a sequence of turns; a *recommender turn* that mentions items
yields one evaluation sample whose targets are those items (CRSLab's
convention: the items the recommender mentions in that turn).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "recommender"]
Split = Literal["train", "valid", "test"]
SPLITS: tuple[Split, ...] = ("train", "valid", "test")


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance.

    Attributes:
        role: ``"user"`` (the seeker) or ``"recommender"``.
        text: The utterance, with item ids already replaced by item names.
        items: Items this turn mentions. For recommender turns these are the
            recommendation targets of the turn.
        entities: Non-item entities (genres, people, ...) this turn mentions.
    """

    role: Role
    text: str
    items: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecSample:
    """A recommender turn as an evaluation/training sample.

    The context is the dialogue before the turn; ``targets`` and ``response``
    are the ground truth and must never be shown to a system under test.
    """

    dataset: str
    split: str
    dialog_id: str
    turn_index: int
    context: tuple[Turn, ...]
    targets: tuple[str, ...]
    response: str

    @property
    def sample_id(self) -> str:
        """Stable id ``dataset/split/dialog_id/turn_index``."""
        return f"{self.dataset}/{self.split}/{self.dialog_id}/{self.turn_index}"

    @property
    def context_items(self) -> tuple[str, ...]:
        """Items mentioned in the context, first mention order, unique."""
        return _unique(i for t in self.context for i in t.items)

    @property
    def context_entities(self) -> tuple[str, ...]:
        """Items and entities mentioned in the context, unique, in order."""
        return _unique(e for t in self.context for e in (*t.items, *t.entities))


@dataclass(frozen=True, slots=True)
class Dialogue:
    """A whole conversation of one corpus split."""

    dataset: str
    split: str
    dialog_id: str
    turns: tuple[Turn, ...]
    meta: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def rec_samples(self) -> Iterator[RecSample]:
        """Yield one sample per recommender turn that mentions items.

        Where the source lists its recommendation turns itself (``meta["rec_turns"]``,
        iEvaLM's per-turn files), exactly those turns are yielded.
        """
        listed = self.meta.get("rec_turns")
        for i, turn in enumerate(self.turns):
            if listed is not None and i not in listed:  # type: ignore[operator]
                continue
            if turn.role == "recommender" and turn.items and i > 0:
                yield RecSample(
                    dataset=self.dataset,
                    split=self.split,
                    dialog_id=self.dialog_id,
                    turn_index=i,
                    context=self.turns[:i],
                    targets=turn.items,
                    response=turn.text,
                )


def _unique(values: Iterator[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
