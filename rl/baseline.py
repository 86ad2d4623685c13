"""The moving-average baseline b(S) of the paper's equation 5, one per sub-task S."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MovingAverageBaseline:
    """``b <- beta * b + (1 - beta) * R``, kept per key (the detected sub-task); a new key starts at its first reward.

    >>> b = MovingAverageBaseline(beta=0.5)
    >>> b.value("recommendation"), b.update("recommendation", 1.0), b.update("recommendation", 0.0)
    (0.0, 1.0, 0.5)
    """

    beta: float = 0.9
    values: dict[str, float] = field(default_factory=dict)

    def value(self, key: str) -> float:
        """Current baseline of ``key`` (0 before its first reward)."""
        return self.values.get(key, 0.0)

    def update(self, key: str, reward: float) -> float:
        """Fold a reward in; return the new baseline."""
        old = self.values.get(key)
        self.values[key] = reward if old is None else self.beta * old + (1 - self.beta) * reward
        return self.values[key]
